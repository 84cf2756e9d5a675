#![no_main]
//! cargo fuzz target: see `medmesh_fuzz::private`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| medmesh_fuzz::private(data));
