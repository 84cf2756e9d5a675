//! A misbehaving container for the runner's tests. Each task does one thing the
//! sandbox must contain or the runner must report:
//! `network` (the host via the default gateway, port `PROBE_PORT`, and 1.1.1.1:53)
//! and `write_input` (whatever is mounted at `/mlcommons/volumes/data`) record what
//! they managed in `<output_path>/outcome` and on stdout;
//! `fail` exits 3; `sleep` outlasts any test timeout; `oom` allocates until killed;
//! `prepare_in_steps` prepares `PREPARE_SUBJECTS` subjects one at a time, keeping
//! MedPerf's `report.yaml` (status and attempt per subject) and skipping the
//! subjects it reports done, so an interrupted preparation resumes; with
//! `first_attempt_stops_after: N` in its parameters its first attempt stops (exit 1)
//! after N subjects, as an interruption would; `count_statistics` writes the number of prepared files;
//! `nan_results` writes results with NaN, infinities and text, as MedPerf's test
//! metrics container does;
//! `empty_statistics` writes an empty file and `bad_results` a YAML list at the
//! output file path;
//! `write_rootfs` tries to write `/evil`; `home_and_files` writes under `$HOME` and
//! counts the entries of the additional files folder; `shm` reports the size of
//! `/dev/shm` and `gpus` the NVIDIA devices it sees.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use examples::{Failure, main_with};

const PROBE_CONNECT_TIMEOUT_MS: u64 = 2000;
const OOM_CHUNK_BYTES: usize = 16 * 1024 * 1024;
/// Subjects `prepare_in_steps` prepares.
const PREPARE_SUBJECTS: usize = 6;

fn main() {
    main_with(
        || None,
        |inv| {
            let out = inv.path("output_path", "/mlcommons/volumes/output");
            // The outcome goes to the log too, for tasks with no output to write it to.
            let record = |what: &str| {
                println!("probe outcome: {what}");
                std::fs::write(out.join("outcome"), what)
            };
            match inv.task.as_str() {
                "network" => {
                    // The host, through the default gateway (a port the test listens on,
                    // PROBE_PORT), and a public resolver.
                    let port: u16 =
                        std::env::var("PROBE_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(9);
                    let mut targets: Vec<SocketAddr> = vec![([1, 1, 1, 1], 53).into()];
                    targets.extend(default_gateway().map(|g| SocketAddr::from((g, port))));
                    let reached: Vec<String> = targets
                        .iter()
                        .filter(|a| {
                            TcpStream::connect_timeout(
                                a,
                                Duration::from_millis(PROBE_CONNECT_TIMEOUT_MS),
                            )
                            .is_ok()
                        })
                        .map(|a| a.to_string())
                        .collect();
                    record(&if reached.is_empty() {
                        "unreachable".to_string()
                    } else {
                        format!("reached {}", reached.join(" "))
                    })?;
                }
                "write_input" => {
                    let input = inv.path("data_path", "/mlcommons/volumes/data");
                    let wrote = std::fs::File::create(input.join("tampered"))
                        .and_then(|mut f| f.write_all(b"x"))
                        .is_ok();
                    let removed = std::fs::read_dir(&input)?
                        .flatten()
                        .any(|e| std::fs::remove_file(e.path()).is_ok());
                    let outcome =
                        if wrote || removed { "input writable" } else { "input read-only" };
                    // A task without outputs (sanity_check) has nowhere to write it.
                    let _ = record(outcome);
                }
                "home_and_files" => {
                    // What a Python model needs: a writable $HOME (caches) and the
                    // additional files folder, even when the model has none.
                    let home = std::env::var("HOME").unwrap_or_default();
                    let cache = Path::new(&home).join(".cache");
                    let home_ok = !home.is_empty()
                        && std::fs::create_dir_all(&cache).is_ok()
                        && std::fs::write(cache.join("probe"), b"x").is_ok();
                    let files = inv.path("additional_files", "/mlcommons/volumes/additional_files");
                    let files = match std::fs::read_dir(&files) {
                        Ok(entries) => format!("{} entries", entries.count()),
                        Err(_) => "missing".to_string(),
                    };
                    let home = if home_ok { "writable" } else { "read-only" };
                    record(&format!("home {home}; additional_files {files}"))?;
                }
                "shm" => {
                    // The size of /dev/shm as mounted, from /proc/mounts.
                    let mounts = std::fs::read_to_string("/proc/mounts")?;
                    let size = mounts
                        .lines()
                        .find(|l| l.split_whitespace().nth(1) == Some("/dev/shm"))
                        .and_then(|l| l.split(',').find_map(|o| o.strip_prefix("size=")))
                        .map(|s| s.split_whitespace().next().unwrap_or(s).to_string())
                        .unwrap_or_else(|| "unknown".into());
                    record(&format!("shm {size}"))?;
                }
                "gpus" => {
                    let devices = std::fs::read_dir("/dev")?
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
                        .count();
                    record(&format!("gpu devices {devices}"))?;
                }
                "write_rootfs" => {
                    let wrote = std::fs::write("/evil", b"x").is_ok();
                    record(if wrote { "rootfs writable" } else { "rootfs read-only" })?;
                }
                "fail" => {
                    eprintln!("failing on purpose");
                    std::process::exit(3);
                }
                "sleep" => std::thread::sleep(Duration::from_secs(3600)),
                "oom" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; OOM_CHUNK_BYTES]);
                        eprintln!("holding {} MiB", hoard.len() * OOM_CHUNK_BYTES / (1024 * 1024));
                    }
                }
                "empty_statistics" => std::fs::write(
                    inv.path("output_path", "/mlcommons/volumes/statistics/statistics.yaml"),
                    b"",
                )?,
                "prepare_in_steps" => prepare_in_steps(inv)?,
                "count_statistics" => {
                    let data = inv.path("data_path", "/mlcommons/volumes/data");
                    let n = std::fs::read_dir(&data)?.count();
                    std::fs::write(
                        inv.path("output_path", "/mlcommons/volumes/statistics/statistics.yaml"),
                        format!("subjects: {n}\n"),
                    )?;
                }
                // As MedPerf's own test metrics container writes them: NaN.
                "nan_results" => std::fs::write(
                    inv.path("output_path", "/mlcommons/volumes/results/results.yaml"),
                    b"auc: 0.5\nerror: .nan\nper_class:\n  benign: .inf\n  malignant: -.inf\nnote: written by the probe\n",
                )?,
                "bad_results" => std::fs::write(
                    inv.path("output_path", "/mlcommons/volumes/results/results.yaml"),
                    b"- not\n- a mapping\n",
                )?,
                other => return Err(Failure(format!("unknown task `{other}`"))),
            }
            Ok(())
        },
    );
}

/// The default route's gateway, from `/proc/net/route` (none without a network).
fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"00000000") {
            return None;
        }
        let g = u32::from_str_radix(f.get(2)?, 16).ok()?;
        Some(Ipv4Addr::from(g.to_le_bytes()))
    })
}

/// One subject at a time: write `<output_path>/subject-<i>` with this attempt's
/// number, then rewrite `report.yaml` (pandas' column layout: `status` and
/// `attempt`, each subject -> value). Subjects reported `done` are skipped.
fn prepare_in_steps(inv: &examples::Invocation) -> Result<(), Failure> {
    let out = inv.path("output_path", "/mlcommons/volumes/data");
    let report = inv.path("report_file", "/mlcommons/volumes/report/report.yaml");
    let params = inv.path("parameters_file", "/mlcommons/volumes/parameters/parameters.yaml");
    let stop_after: Option<usize> = examples::read_flat_yaml(&params)
        .ok()
        .and_then(|p| p.get("first_attempt_stops_after").and_then(|v| v.parse().ok()));
    // The report as this probe writes it: section lines, then `  subject: value`.
    let mut columns: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, String>,
    > = Default::default();
    let mut section = String::new();
    for line in std::fs::read_to_string(&report).unwrap_or_default().lines() {
        if let Some(entry) = line.strip_prefix("  ") {
            if let Some((k, v)) = entry.split_once(':') {
                columns
                    .entry(section.clone())
                    .or_default()
                    .insert(k.trim().into(), v.trim().into());
            }
        } else if let Some(name) = line.strip_suffix(':') {
            section = name.to_string();
        }
    }
    let attempt = columns
        .get("attempt")
        .map(|a| a.values().filter_map(|v| v.parse::<u32>().ok()).max().unwrap_or(0))
        .unwrap_or(0)
        + 1;
    let mut done_now = 0;
    for i in 1..=PREPARE_SUBJECTS {
        let subject = format!("subject-{i}");
        let status = columns.entry("status".into()).or_default();
        if status.get(&subject).map(String::as_str) == Some("done") {
            continue;
        }
        if attempt == 1 && stop_after == Some(done_now) {
            return Err(Failure(format!("interrupted after {done_now} subjects")));
        }
        std::fs::write(out.join(&subject), format!("attempt {attempt}\n"))
            .map_err(|e| Failure(e.to_string()))?;
        status.insert(subject.clone(), "done".into());
        for j in 1..=PREPARE_SUBJECTS {
            status.entry(format!("subject-{j}")).or_insert_with(|| "pending".into());
        }
        columns.entry("attempt".into()).or_default().insert(subject, attempt.to_string());
        let mut text = String::new();
        for (name, values) in &columns {
            text.push_str(&format!("{name}:\n"));
            for (k, v) in values {
                text.push_str(&format!("  {k}: {v}\n"));
            }
        }
        // In place: the report is a bind-mounted file, which a rename would not reach.
        std::fs::write(&report, text).map_err(|e| Failure(e.to_string()))?;
        done_now += 1;
    }
    Ok(())
}
