//! `medmesh-faults`: build the node image, run the fault scenarios on containerised
//! federations (one at a time) and print what each measured.
//!
//! ```text
//! cargo run -p tests --bin medmesh-faults [-- --json] [-- partition node-loss ...]
//! cargo run -p tests --bin medmesh-faults -- --image-only    # just build medmesh/node:dev
//! ```

use std::process::ExitCode;

use runner::Engine;
use tests::faults::{self, SCENARIOS};
use tests::federation::{NODE_IMAGE, build_node_image};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let image_only = args.iter().any(|a| a == "--image-only");
    let mut chosen: Vec<&str> =
        args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    if let Some(bad) =
        args.iter().find(|a| a.starts_with("--") && *a != "--json" && *a != "--image-only")
    {
        eprintln!(
            "error: unknown option {bad}; usage: medmesh-faults [--json] [--image-only] [{}]...",
            SCENARIOS.join("|")
        );
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
        match build_node_image(&engine).await {
            Ok(digest) if image_only => {
                println!("{NODE_IMAGE} {digest}");
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
        let mut reports = Vec::new();
        let mut failed = false;
        for s in chosen {
            eprintln!("scenario {s}...");
            match faults::run(&engine, s).await {
                Ok(r) => {
                    eprintln!(
                        "  {} written, {} lost, converged in {:.1} s",
                        r.written,
                        r.lost,
                        r.converge_ms as f64 / 1000.0
                    );
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
