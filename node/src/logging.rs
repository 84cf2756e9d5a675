//! Operator logs for the node binaries: `tracing` to stderr, filtered by
//! `RUST_LOG` or a quiet default. Audit events use the `medmesh::audit` target.

/// What operators see without `RUST_LOG`.
pub const DEFAULT_LOG_FILTER: &str = "info,libp2p=warn,libp2p_gossipsub=error,axum=warn";

/// Install the global subscriber (once; later calls do nothing).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colours only on a terminal: logs kept in files or by Docker stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
