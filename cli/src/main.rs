//! The `medmesh` binary: parse flags, dispatch, print errors with their causes.
//!
//! The user commands live in [`medmesh_cli::app`]; `node` (running a node in the
//! foreground) is added here from [`node_cmd`], so that each stays in its file.

mod node_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use medmesh_cli::app::{self, Cli};

fn main() -> ExitCode {
    let command = Cli::command().subcommand(
        node_cmd::NodeCmd::augment_subcommands(clap::Command::new("node"))
            .about("Run your MedMesh node")
            .subcommand_required(true)
            .arg_required_else_help(true),
    );
    let matches = command.get_matches();
    let result = match matches.subcommand() {
        Some(("node", m)) => match node_cmd::NodeCmd::from_arg_matches(m) {
            Ok(cmd) => node_cmd::run(cmd, matches.get_one::<std::path::PathBuf>("home").cloned()),
            Err(e) => e.exit(),
        },
        _ => match Cli::from_arg_matches(&matches) {
            Ok(cli) => app::run(cli),
            Err(e) => e.exit(),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if medmesh_cli::output::is_closed_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            if e.downcast_ref::<medmesh_cli::publish::IgnoredByFold>().is_some() {
                return ExitCode::from(medmesh_cli::publish::EXIT_IGNORED);
            }
            ExitCode::FAILURE
        }
    }
}
