//! Output: tables for people, `--json` for scripts. Errors go to stderr.

use std::io::Write;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// `println!` that returns the write error instead of panicking (a closed pipe,
/// as in `medmesh keys show | head -1`, is then a quiet exit 0 in `main`).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Print `value` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The error is a write to a closed stdout (the reader of a pipe went away).
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(std::io::Error::kind).or_else(|| {
            c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind)
        }) == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Print a table with a header row (it ends with a newline).
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    writeln!(std::io::stdout().lock(), "{t}")?;
    Ok(())
}

/// A value in millionths as a decimal with four places.
pub fn millionths(v: i64) -> String {
    format!("{:.4}", v as f64 / 1e6)
}

/// A spinner on stderr for long work (hidden when stderr is not a terminal).
pub fn spinner(msg: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}
