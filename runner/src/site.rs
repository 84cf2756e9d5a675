//! The site's policy for container tasks: what a hospital lets a benchmark's
//! containers use on its machine (CPUs, memory, shared memory, processes, GPUs,
//! timeouts per task) and which container engines it runs them on.
//!
//! The policy is `site.yaml` in the user's home; every key is optional:
//!
//! ```yaml
//! cpus: 8              # cores a task may use (fractions allowed); default: all
//! memory: 32GiB        # per task, no swap on top; default: 3/4 of the engine's memory
//! shm_size: 4GiB       # /dev/shm (PyTorch data loaders need it); default 1 GiB
//! pids: 4096           # processes and threads per task
//! gpus: all            # none (default), all, a count (2) or device ids ([0, 1])
//! timeouts:            # per task kind: 90s, 30m, 2h, or seconds
//!   prepare: 4h
//!   infer: 2h
//! engines: [docker, podman]   # engines tasks may run on; default: either
//! ```
//!
//! `--gpus` and `--shm-size`, as MedPerf has them, override the policy for one
//! command. Sizes take MedPerf's and Docker's units: a number of bytes, or with `k`,
//! `m`, `g` or `t` (binary multiples; `KiB`, `MB`, `GiB` are read the same way).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::RunLimits;
use protocol::contract::{TaskKind, nearest};

/// The policy file, in the user's home.
pub const SITE_POLICY_FILE: &str = "site.yaml";
/// Largest policy file read.
pub const SITE_POLICY_BYTES_MAX: u64 = 64 * 1024;
/// Shared memory of a task unless the policy says otherwise (Docker's own default,
/// 64 MiB, makes PyTorch's data loader workers crash).
pub const TASK_SHM_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Processes and threads of a task unless the policy says otherwise.
pub const TASK_PIDS_SITE_DEFAULT: u64 = 4096;
/// Share of the engine's memory a task may use by default, in quarters.
pub const TASK_MEMORY_QUARTERS_DEFAULT: u64 = 3;
/// A task is given at least this much memory by default, whatever the engine reports.
pub const TASK_MEMORY_BYTES_FLOOR: u64 = 2 * 1024 * 1024 * 1024;

/// GPUs a task gets, through the engine's device requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Gpus {
    #[default]
    None,
    All,
    Count(u32),
    Devices(Vec<String>),
}

impl Gpus {
    /// MedPerf's `--gpus` values: `all`, a count, `device=0,1`, or a list `0,1`
    /// (`none` and `0` for none).
    pub fn parse(s: &str) -> Result<Gpus, SiteError> {
        let s = s.trim();
        let bad = || SiteError::Invalid {
            what: "gpus".into(),
            value: s.into(),
            expected: "none, all, a count, or device ids such as device=0,1".into(),
        };
        match s {
            "" | "none" | "0" => Ok(Gpus::None),
            "all" => Ok(Gpus::All),
            _ => {
                if let Ok(n) = s.parse::<u32>() {
                    return Ok(Gpus::Count(n));
                }
                let ids = s.strip_prefix("device=").unwrap_or(s);
                let ids: Vec<String> = ids
                    .split(',')
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty())
                    .collect();
                let valid = |d: &String| {
                    d.len() <= 64 && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                };
                if ids.is_empty() || !ids.iter().all(valid) {
                    return Err(bad());
                }
                Ok(Gpus::Devices(ids))
            }
        }
    }
}

/// What the CLI's flags override for one command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub gpus: Option<Gpus>,
    pub shm_bytes: Option<u64>,
}

/// What the engine's machine has, for the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub cpus: u64,
    pub memory_bytes: u64,
}

/// A container engine a site may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }
}

/// The site policy as read from `site.yaml`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SitePolicy {
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub shm_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub gpus: Gpus,
    /// Per task kind, in milliseconds.
    pub timeouts_ms: BTreeMap<TaskKind, u64>,
    /// `None`: any engine.
    pub engines: Option<Vec<EngineKind>>,
    /// Where it was read from, if anywhere.
    pub path: Option<PathBuf>,
}

/// A policy that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("cannot read the site policy {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the site policy {path} is {len} bytes; at most {SITE_POLICY_BYTES_MAX} are read")]
    TooLarge { path: PathBuf, len: u64 },
    #[error(
        "the site policy {path} is not valid: {reason}; see `runner::site` in ARCHITECTURE.md for its keys"
    )]
    Yaml { path: PathBuf, reason: String },
    #[error("{what} `{value}` is not valid; expected {expected}")]
    Invalid { what: String, value: String, expected: String },
    #[error(
        "this site's policy allows only {allowed} engines, and DOCKER_HOST points at {found}; point it at an allowed engine or change `engines` in {path}"
    )]
    EngineNotAllowed { found: &'static str, allowed: String, path: String },
}

/// `site.yaml` as written: every key optional, sizes and durations as text.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    cpus: Option<f64>,
    memory: Option<SizeText>,
    shm_size: Option<SizeText>,
    pids: Option<u64>,
    gpus: Option<GpusText>,
    #[serde(default)]
    timeouts: BTreeMap<String, SizeText>,
    engines: Option<Vec<String>>,
}

/// A size, duration or GPU value as YAML gives it: a number or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeText {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum GpusText {
    Count(u32),
    Text(String),
    List(Vec<SizeText>),
}

impl SitePolicy {
    /// Read `site.yaml` from `home`; no file is the default policy.
    pub fn load(home: &Path) -> Result<SitePolicy, SiteError> {
        let path = home.join(SITE_POLICY_FILE);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SitePolicy::default()),
            Err(source) => return Err(SiteError::Read { path, source }),
        };
        if len > SITE_POLICY_BYTES_MAX {
            return Err(SiteError::TooLarge { path, len });
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|source| SiteError::Read { path: path.clone(), source })?;
        let mut policy = SitePolicy::parse(&text)
            .map_err(|reason| SiteError::Yaml { path: path.clone(), reason })?;
        policy.path = Some(path);
        Ok(policy)
    }

    /// Parse the text of a policy; the error says which key is wrong and why.
    pub fn parse(text: &str) -> Result<SitePolicy, String> {
        if text.trim().is_empty() {
            return Ok(SitePolicy::default());
        }
        let raw: RawPolicy = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let size = |what: &str, v: &SizeText| -> Result<u64, String> {
            match v {
                SizeText::Number(n) => Ok(*n),
                SizeText::Text(t) => parse_size(t).map_err(|e| format!("{what}: {e}")),
            }
        };
        if let Some(c) = raw.cpus
            && !(c.is_finite() && c > 0.0 && c <= 4096.0)
        {
            return Err(format!("cpus: {c} is not a number of cores between 0 and 4096"));
        }
        let mut timeouts_ms = BTreeMap::new();
        for (task, v) in &raw.timeouts {
            let kind = TaskKind::from_name(task).ok_or_else(|| {
                let hint = nearest(task, TaskKind::ALL.map(TaskKind::name))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                format!("timeouts: `{task}` is not a task{hint}")
            })?;
            let ms = match v {
                SizeText::Number(s) => s.saturating_mul(1000),
                SizeText::Text(t) => {
                    parse_duration_ms(t).map_err(|e| format!("timeouts.{task}: {e}"))?
                }
            };
            if ms == 0 {
                return Err(format!("timeouts.{task}: must be more than zero"));
            }
            timeouts_ms.insert(kind, ms);
        }
        let engines = match raw.engines {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|e| match e.as_str() {
                        "docker" => Ok(EngineKind::Docker),
                        "podman" => Ok(EngineKind::Podman),
                        other => Err(format!("engines: `{other}` is not docker or podman")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let gpus = match raw.gpus {
            None => Gpus::None,
            Some(GpusText::Count(n)) => {
                if n == 0 {
                    Gpus::None
                } else {
                    Gpus::Count(n)
                }
            }
            Some(GpusText::Text(t)) => Gpus::parse(&t).map_err(|e| e.to_string())?,
            Some(GpusText::List(ids)) => {
                let ids: Vec<String> = ids
                    .iter()
                    .map(|i| match i {
                        SizeText::Number(n) => n.to_string(),
                        SizeText::Text(t) => t.clone(),
                    })
                    .collect();
                Gpus::parse(&ids.join(",")).map_err(|e| e.to_string())?
            }
        };
        Ok(SitePolicy {
            cpus: raw.cpus,
            memory_bytes: raw.memory.as_ref().map(|m| size("memory", m)).transpose()?,
            shm_bytes: raw.shm_size.as_ref().map(|m| size("shm_size", m)).transpose()?,
            pids: raw.pids,
            gpus,
            timeouts_ms,
            engines,
            path: None,
        })
    }

    /// The limits every task gets on a machine like `host`, with the command's
    /// overrides.
    pub fn limits(&self, host: Host, overrides: &Overrides) -> RunLimits {
        let defaults = RunLimits::default();
        let memory_bytes = self.memory_bytes.unwrap_or_else(|| {
            (host.memory_bytes / 4 * TASK_MEMORY_QUARTERS_DEFAULT).max(TASK_MEMORY_BYTES_FLOOR)
        });
        let cpus = self.cpus.unwrap_or(host.cpus.max(1) as f64);
        let timeout =
            |kind: TaskKind, default: u64| *self.timeouts_ms.get(&kind).unwrap_or(&default);
        RunLimits {
            memory_bytes,
            nano_cpus: (cpus * 1e9).round() as u64,
            pids: self.pids.unwrap_or(TASK_PIDS_SITE_DEFAULT),
            shm_bytes: overrides
                .shm_bytes
                .or(self.shm_bytes)
                .unwrap_or(TASK_SHM_BYTES_DEFAULT.min(memory_bytes / 2)),
            gpus: overrides.gpus.clone().unwrap_or_else(|| self.gpus.clone()),
            prepare_timeout_ms: timeout(TaskKind::Prepare, defaults.prepare_timeout_ms),
            sanity_check_timeout_ms: timeout(
                TaskKind::SanityCheck,
                defaults.sanity_check_timeout_ms,
            ),
            statistics_timeout_ms: timeout(TaskKind::Statistics, defaults.statistics_timeout_ms),
            infer_timeout_ms: timeout(TaskKind::Infer, defaults.infer_timeout_ms),
            evaluate_timeout_ms: timeout(TaskKind::Evaluate, defaults.evaluate_timeout_ms),
            other_timeout_ms: defaults.other_timeout_ms,
        }
    }

    /// Refuse an engine the policy does not allow.
    pub fn check_engine(&self, kind: EngineKind) -> Result<(), SiteError> {
        match &self.engines {
            Some(allowed) if !allowed.contains(&kind) => Err(SiteError::EngineNotAllowed {
                found: kind.name(),
                allowed: allowed.iter().map(|e| e.name()).collect::<Vec<_>>().join(" and "),
                path: self
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| SITE_POLICY_FILE.into()),
            }),
            _ => Ok(()),
        }
    }
}

/// A size in bytes: `1073741824`, `512m`, `2g`, `2GiB`, `1.5GB` (binary multiples,
/// as Docker's `--shm-size` reads them).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| format!("`{text}` is not a size such as 512m, 2g or 4GiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("`{other}` in `{text}` is not a unit (b, k, m, g, t)")),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// A duration: `90s`, `30m`, `2h`, `1d`, or a number of seconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration such as 90s, 30m or 2h"))?;
    let ms_per = match unit.trim() {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("`{other}` in `{text}` is not a unit (ms, s, m, h, d)")),
    };
    n.checked_mul(ms_per).ok_or_else(|| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;
    const HOST: Host = Host { cpus: 16, memory_bytes: 64 * GIB };

    #[test]
    fn without_a_policy_a_task_gets_the_machine_not_one_core_and_two_gib() {
        let l = SitePolicy::default().limits(HOST, &Overrides::default());
        assert_eq!(l.nano_cpus, 16_000_000_000);
        assert_eq!(l.memory_bytes, 48 * GIB);
        assert_eq!(l.shm_bytes, GIB);
        assert_eq!(l.pids, TASK_PIDS_SITE_DEFAULT);
        assert_eq!(l.gpus, Gpus::None);
        // A small machine still gives a task enough memory to start.
        let small = Host { cpus: 1, memory_bytes: GIB };
        assert_eq!(
            SitePolicy::default().limits(small, &Overrides::default()).memory_bytes,
            2 * GIB
        );
    }

    #[test]
    fn a_policy_sets_every_limit_and_the_flags_override_gpus_and_shared_memory() {
        let p = SitePolicy::parse(
            "cpus: 2.5\nmemory: 12GiB\nshm_size: 2g\npids: 512\ngpus: [0, 1]\ntimeouts:\n  prepare: 4h\n  infer: 90m\n  evaluate: 600\nengines: [podman]\n",
        )
        .unwrap();
        let l = p.limits(HOST, &Overrides::default());
        assert_eq!(
            (l.nano_cpus, l.memory_bytes, l.shm_bytes, l.pids),
            (2_500_000_000, 12 * GIB, 2 * GIB, 512)
        );
        assert_eq!(l.gpus, Gpus::Devices(vec!["0".into(), "1".into()]));
        assert_eq!(
            (l.prepare_timeout_ms, l.infer_timeout_ms, l.evaluate_timeout_ms),
            (4 * 3_600_000, 90 * 60_000, 600_000)
        );
        assert_eq!(l.statistics_timeout_ms, RunLimits::default().statistics_timeout_ms);
        let o = Overrides { gpus: Some(Gpus::All), shm_bytes: Some(8 * GIB) };
        let l = p.limits(HOST, &o);
        assert_eq!((l.gpus, l.shm_bytes), (Gpus::All, 8 * GIB));
        assert!(p.check_engine(EngineKind::Podman).is_ok());
        let err = p.check_engine(EngineKind::Docker).unwrap_err().to_string();
        assert!(err.contains("only podman engines") && err.contains("docker"), "{err}");
    }

    #[test]
    fn a_bad_policy_names_the_key_and_what_it_expects() {
        let cases = [
            ("cpu: 2\n", "unknown field `cpu`"),
            ("memory: 12 parsecs\n", "not a unit"),
            ("timeouts:\n  infre: 1h\n", "did you mean `infer`"),
            ("timeouts:\n  infer: 0\n", "more than zero"),
            ("gpus: two please\n", "device=0,1"),
            ("engines: [kubernetes]\n", "not docker or podman"),
            ("cpus: -1\n", "between 0 and 4096"),
        ];
        for (text, expected) in cases {
            let err = SitePolicy::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        assert_eq!(SitePolicy::parse("").unwrap(), SitePolicy::default());
    }

    #[test]
    fn gpus_read_as_medperf_writes_them() {
        assert_eq!(Gpus::parse("all").unwrap(), Gpus::All);
        assert_eq!(Gpus::parse("2").unwrap(), Gpus::Count(2));
        assert_eq!(Gpus::parse("0").unwrap(), Gpus::None);
        assert_eq!(Gpus::parse("device=0,2").unwrap(), Gpus::Devices(vec!["0".into(), "2".into()]));
        assert!(Gpus::parse("device=").is_err());
        assert!(Gpus::parse("0;rm -rf /").is_err());
    }

    #[test]
    fn sizes_and_durations_take_docker_and_medperf_units() {
        assert_eq!(parse_size("512m").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * GIB);
        assert_eq!(parse_size("1.5g").unwrap(), 3 * GIB / 2);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(
            parse_size("lots").is_err() && parse_size("0").is_err() && parse_size("9x").is_err()
        );
        assert_eq!(parse_duration_ms("90s").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("45").unwrap(), 45_000);
        assert!(
            parse_duration_ms("soon").is_err() && parse_duration_ms("99999999999999999d").is_err()
        );
    }
}
