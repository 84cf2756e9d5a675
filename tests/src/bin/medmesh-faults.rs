//! `medmesh-faults`: build the node image, run the fault scenarios on containerised
//! federations (one at a time) and print what each measured.
//!
//! ```text
//! cargo run -p tests --bin medmesh-faults [-- --json] [-- partition node-loss ...]
//! ```

use std::process::ExitCode;

use runner::Engine;
use tests::faults::{self, SCENARIOS};
use tests::federation::build_node_image;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let mut chosen: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    if let Some(bad) = args.iter().find(|a| a.starts_with("--") && *a != "--json") {
        eprintln!("error: unknown option {bad}; usage: medmesh-faults [--json] [{}]...", SCENARIOS.join("|"));
        return ExitCode::FAILURE;
    }
    if let Some(bad) = chosen.iter().find(|c| !SCENARIOS.contains(c)) {
        eprintln!("error: no scenario named {bad}; the scenarios are {}", SCENARIOS.join(", "));
        return ExitCode::FAILURE;
    }
    if chosen.is_empty() {
        chosen = SCENARIOS.to_vec();
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let engine = match Engine::connect(1).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("building the node image (static release build; minutes the first time)...");
        if let Err(e) = build_node_image(&engine).await {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
        let mut reports = Vec::new();
        let mut failed = false;
        for s in chosen {
            eprintln!("scenario {s}...");
            match faults::run(&engine, s).await {
                Ok(r) => {
                    eprintln!("  {} written, {} lost, converged in {:.1} s", r.written, r.lost, r.converge_ms as f64 / 1000.0);
                    reports.push(r);
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    failed = true;
                }
            }
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&reports).unwrap_or_default());
        } else {
            print!("{}", faults::table(&reports));
        }
        if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
    })
}
