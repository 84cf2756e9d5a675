//! Every bound on input from outside, in one place. Units come last in the name.

/// Largest signed envelope accepted from anyone (fits one gossipsub message).
pub const ENVELOPE_BYTES_MAX: usize = 60 * 1024;
/// Deepest CBOR nesting the strict decoder follows (records need about 9).
pub const CBOR_DEPTH_MAX: usize = 16;
/// Names: records, tasks, parameters, metrics.
pub const NAME_BYTES_MAX: usize = 256;
/// Free text: descriptions, reasons, locations, URLs.
pub const TEXT_BYTES_MAX: usize = 4096;
/// Any list inside a record (committee, tasks, parameters, release entries, ...).
pub const LIST_LEN_MAX: usize = 1024;
/// Entries in a dataset's statistics map.
pub const STATISTICS_ENTRIES_MAX: usize = 256;
/// Encrypted metrics blob inside a result record.
pub const SEALED_BYTES_MAX: usize = 16 * 1024;
/// Committee size.
pub const COMMITTEE_LEN_MAX: usize = 64;
/// Admin keys in a network root or a rotation.
pub const ADMINS_LEN_MAX: usize = 32;
/// A container's parameters file, carried inside its record.
pub const PARAMETERS_BYTES_MAX: usize = 16 * 1024;
/// Largest blob a record may name (an image archive, additional files, a demo
/// dataset); the size a record declares bounds what a fetch accepts.
pub const BLOB_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;
