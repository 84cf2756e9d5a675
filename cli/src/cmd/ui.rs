//! `medmesh ui`: serve the web application for this home on loopback.

use std::io::Write;
use std::net::SocketAddr;

use clap::Args;

use super::Ctx;

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Where to serve (loopback only; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// Run `medmesh ui` until interrupted. The one-time sign-in link goes to stdout
/// (alone on its line, or as `{"url": ...}` with `--json`).
pub fn run(ctx: &Ctx, a: UiArgs) -> anyhow::Result<()> {
    let json = ctx.json;
    crate::ui::serve(ctx.home.clone(), ctx.site.clone(), a.listen, |link| {
        let mut out = std::io::stdout().lock();
        let _ = if json {
            writeln!(out, "{}", serde_json::json!({ "url": link }))
        } else {
            writeln!(out, "{link}")
        };
        let _ = out.flush();
        eprintln!(
            "medmesh ui: open the link above in your browser (it signs in one browser, once); stop with Ctrl-C"
        );
    })
}
