//! MedPerf's container contract: the tasks a benchmark runs and, for each, which
//! parameters the runner provides as inputs and which it collects as outputs.
//!
//! The contract, not a container's own manifest, decides what a container may write:
//! a site's runner mounts every input read-only and only the outputs named here
//! read-write, whatever the manifest says. [`check_manifest`] refuses a manifest that
//! disagrees with the contract (a known input declared as an output, an unknown task
//! or parameter, mount paths that overlap); the runner applies it to a local
//! manifest file and every node applies it to each container record, so a manifest
//! arriving from the network is checked exactly as a local one.
//!
//! | task | inputs (read-only) | outputs (read-write) |
//! | --- | --- | --- |
//! | `prepare` | data_path, labels_path, parameters_file | output_path, output_labels_path, metadata_path, report_file |
//! | `sanity_check` | data_path, labels_path, parameters_file, metadata_path | |
//! | `statistics` | data_path, labels_path, parameters_file, metadata_path | output_path |
//! | `infer` | data_path, parameters_file, additional_files | output_path |
//! | `evaluate` | predictions, labels, parameters_file | output_path, local_outputs_path |
//!
//! A model never sees labels: `infer` has no labels parameter.

use crate::record::{Manifest, ManifestFormat, Task};

/// Whether the runner provides a parameter (read-only) or collects it (read-write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

/// The tasks of MedPerf's benchmark workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskKind {
    Prepare,
    SanityCheck,
    Statistics,
    Infer,
    Evaluate,
}

use Role::{Input, Output};

impl TaskKind {
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Prepare,
        TaskKind::SanityCheck,
        TaskKind::Statistics,
        TaskKind::Infer,
        TaskKind::Evaluate,
    ];

    /// The task's name in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Prepare => "prepare",
            TaskKind::SanityCheck => "sanity_check",
            TaskKind::Statistics => "statistics",
            TaskKind::Infer => "infer",
            TaskKind::Evaluate => "evaluate",
        }
    }

    pub fn from_name(name: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every parameter the runner knows for this task, with its role.
    pub fn params(self) -> &'static [(&'static str, Role)] {
        match self {
            TaskKind::Prepare => &[
                ("data_path", Input),
                ("labels_path", Input),
                ("parameters_file", Input),
                ("output_path", Output),
                ("output_labels_path", Output),
                ("metadata_path", Output),
                ("report_file", Output),
            ],
            TaskKind::SanityCheck => &[
                ("data_path", Input),
                ("labels_path", Input),
                ("parameters_file", Input),
                ("metadata_path", Input),
            ],
            TaskKind::Statistics => &[
                ("data_path", Input),
                ("labels_path", Input),
                ("parameters_file", Input),
                ("metadata_path", Input),
                ("output_path", Output),
            ],
            TaskKind::Infer => &[
                ("data_path", Input),
                ("parameters_file", Input),
                ("additional_files", Input),
                ("output_path", Output),
            ],
            TaskKind::Evaluate => &[
                ("predictions", Input),
                ("labels", Input),
                ("parameters_file", Input),
                ("output_path", Output),
                ("local_outputs_path", Output),
            ],
        }
    }

    /// The role of `param` in this task, if the runner knows it.
    pub fn role(self, param: &str) -> Option<Role> {
        self.params().iter().find(|(n, _)| *n == param).map(|(_, r)| *r)
    }

    /// The names of the parameters with `role`.
    pub fn names(self, role: Role) -> impl Iterator<Item = &'static str> {
        self.params().iter().filter(move |(_, r)| *r == role).map(|(n, _)| *n)
    }
}

/// Container paths a parameter may not be mounted at or under: the kernel's own
/// filesystems, and `/tmp`, which the runner mounts itself.
pub const RESERVED_MOUNT_PATHS: [&str; 3] = ["/proc", "/sys", "/dev"];
/// The container's scratch folder, mounted by the runner (a parameter may sit below
/// it, not at it).
pub const SCRATCH_MOUNT_PATH: &str = "/tmp";

/// How a manifest breaks the contract. Messages say what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error(
        "task `{task}` is not one MedPerf runs{}; the tasks are prepare, sanity_check, statistics, infer and evaluate",
        hint(suggestion)
    )]
    UnknownTask { task: String, suggestion: Option<&'static str> },
    #[error("task `{task}` appears twice; keep one")]
    DuplicateTask { task: String },
    #[error(
        "task `{task}`: parameter `{param}` is not one the runner provides or collects{}; it knows {known}",
        hint(suggestion)
    )]
    UnknownParam { task: String, param: String, suggestion: Option<&'static str>, known: String },
    #[error(
        "task `{task}`: `{param}` is an input and is always mounted read-only; a manifest may not declare it as an output"
    )]
    InputAsOutput { task: String, param: String },
    #[error(
        "task `{task}`: `{param}` is an output the runner collects; declare it under the outputs"
    )]
    OutputAsInput { task: String, param: String },
    #[error("task `{task}`: parameter `{param}` is declared twice; keep one")]
    DuplicateParam { task: String, param: String },
    #[error(
        "task `{task}`: `{param}` is mounted at `{path}`, which {reason}; choose another mount_path"
    )]
    MountPath { task: String, param: String, path: String, reason: String },
}

fn hint(suggestion: &Option<&'static str>) -> String {
    suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
}

/// Check a manifest against the contract: known tasks, known parameters in their
/// roles, each declared once, and (container-config format) mount paths that neither
/// repeat, nor sit inside an input's mount (the engine would create the mount point
/// in the input's host folder), nor take a reserved path.
pub fn check_manifest(manifest: &Manifest) -> Result<(), ContractError> {
    for (i, task) in manifest.tasks.iter().enumerate() {
        if manifest.tasks[..i].iter().any(|t| t.name == task.name) {
            return Err(ContractError::DuplicateTask { task: task.name.clone() });
        }
        let kind = TaskKind::from_name(&task.name).ok_or_else(|| ContractError::UnknownTask {
            task: task.name.clone(),
            suggestion: nearest(&task.name, TaskKind::ALL.iter().map(|k| k.name())),
        })?;
        check_task(kind, task, manifest.format)?;
    }
    Ok(())
}

fn check_task(kind: TaskKind, task: &Task, format: ManifestFormat) -> Result<(), ContractError> {
    let declared =
        task.inputs.iter().map(|p| (p, Input)).chain(task.outputs.iter().map(|p| (p, Output)));
    let mut seen: Vec<&str> = Vec::new();
    for (param, declared_as) in declared {
        let name = param.name.as_str();
        if seen.contains(&name) {
            return Err(ContractError::DuplicateParam {
                task: task.name.clone(),
                param: name.into(),
            });
        }
        seen.push(name);
        match (kind.role(name), declared_as) {
            (None, _) => {
                return Err(ContractError::UnknownParam {
                    task: task.name.clone(),
                    param: name.into(),
                    suggestion: nearest(name, kind.params().iter().map(|(n, _)| *n)),
                    known: kind.params().iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                });
            }
            (Some(Input), Output) => {
                return Err(ContractError::InputAsOutput {
                    task: task.name.clone(),
                    param: name.into(),
                });
            }
            (Some(Output), Input) => {
                return Err(ContractError::OutputAsInput {
                    task: task.name.clone(),
                    param: name.into(),
                });
            }
            _ => {}
        }
    }
    if format == ManifestFormat::ContainerConfig {
        check_mount_paths(kind, task)?;
    }
    Ok(())
}

fn check_mount_paths(kind: TaskKind, task: &Task) -> Result<(), ContractError> {
    let mounts: Vec<(&str, &str)> = task
        .inputs
        .iter()
        .chain(&task.outputs)
        .filter_map(|p| Some((p.name.as_str(), p.mount_path.as_deref()?)))
        .collect();
    let bad = |param: &str, path: &str, reason: String| ContractError::MountPath {
        task: task.name.clone(),
        param: param.into(),
        path: path.into(),
        reason,
    };
    for (i, &(param, path)) in mounts.iter().enumerate() {
        let path_t = path.trim_end_matches('/');
        if path_t.is_empty() {
            return Err(bad(param, path, "is the root of the filesystem".into()));
        }
        if let Some(r) = RESERVED_MOUNT_PATHS.iter().find(|r| within(path_t, r)) {
            return Err(bad(param, path, format!("is under `{r}`, which belongs to the kernel")));
        }
        if path_t == SCRATCH_MOUNT_PATH {
            return Err(bad(param, path, "is the scratch folder the runner mounts itself".into()));
        }
        for &(other, other_path) in &mounts[..i] {
            if path_t == other_path.trim_end_matches('/') {
                return Err(bad(param, path, format!("is also where `{other}` is mounted")));
            }
        }
        for &(other, other_path) in &mounts {
            let other_t = other_path.trim_end_matches('/');
            if other != param && kind.role(other) == Some(Input) && within(path_t, other_t) {
                return Err(bad(param, path, format!("is inside the read-only input `{other}`")));
            }
        }
    }
    Ok(())
}

/// `path` is `dir` or below it (both without a trailing slash).
fn within(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// The candidate closest to `word` by edit distance, when close enough to be a typo
/// (at most a third of the word's length, and at least one edit allowed).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting adjacent transpositions as one edit.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows of the Damerau-Levenshtein (optimal string alignment) table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Param, ParamKind, RunArgs};

    fn param(name: &str, mount: &str) -> Param {
        Param {
            name: name.into(),
            kind: ParamKind::Directory,
            mount_path: Some(mount.into()),
            default: None,
            optional: false,
        }
    }

    fn manifest(task: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> Manifest {
        Manifest {
            format: ManifestFormat::ContainerConfig,
            tasks: vec![Task {
                name: task.into(),
                inputs: inputs.iter().map(|(n, m)| param(n, m)).collect(),
                outputs: outputs.iter().map(|(n, m)| param(n, m)).collect(),
                run_args: RunArgs::default(),
            }],
        }
    }

    #[test]
    fn every_known_input_declared_as_an_output_is_refused_for_every_task() {
        for kind in TaskKind::ALL {
            for input in kind.names(Input) {
                let m = manifest(kind.name(), &[], &[(input, "/mlcommons/volumes/x")]);
                assert_eq!(
                    check_manifest(&m),
                    Err(ContractError::InputAsOutput {
                        task: kind.name().into(),
                        param: input.into()
                    }),
                    "{} {input}",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn a_manifest_in_the_contract_passes_with_every_parameter_in_its_role() {
        for kind in TaskKind::ALL {
            let mounts: Vec<(&str, Role, String)> = kind
                .params()
                .iter()
                .enumerate()
                .map(|(i, (name, role))| (*name, *role, format!("/mlcommons/volumes/{i}")))
                .collect();
            let with = |role: Role| -> Vec<(&str, &str)> {
                mounts.iter().filter(|m| m.1 == role).map(|m| (m.0, m.2.as_str())).collect()
            };
            let m = manifest(kind.name(), &with(Input), &with(Output));
            assert_eq!(check_manifest(&m), Ok(()), "{}", kind.name());
        }
    }

    #[test]
    fn a_model_may_not_ask_for_labels() {
        let m = manifest("infer", &[("labels_path", "/l")], &[("output_path", "/o")]);
        assert!(matches!(check_manifest(&m), Err(ContractError::UnknownParam { .. })));
    }

    #[test]
    fn a_misspelt_task_or_parameter_is_refused_with_the_nearest_known_name() {
        let err = check_manifest(&manifest("evalute", &[], &[])).unwrap_err();
        assert_eq!(
            err,
            ContractError::UnknownTask { task: "evalute".into(), suggestion: Some("evaluate") }
        );
        assert!(err.to_string().contains("did you mean `evaluate`"), "{err}");
        let err = check_manifest(&manifest("infer", &[("data_pth", "/d")], &[])).unwrap_err();
        assert!(err.to_string().contains("did you mean `data_path`"), "{err}");
        let err = check_manifest(&manifest("train", &[], &[])).unwrap_err();
        assert_eq!(err, ContractError::UnknownTask { task: "train".into(), suggestion: None });
    }

    #[test]
    fn an_output_mounted_inside_an_input_or_over_another_mount_is_refused() {
        let cases = [
            manifest("infer", &[("data_path", "/data")], &[("output_path", "/data/out")]),
            manifest("infer", &[("data_path", "/data/")], &[("output_path", "/data")]),
            manifest("infer", &[("data_path", "/d"), ("parameters_file", "/d/p.yaml")], &[]),
            manifest("infer", &[("data_path", "/proc/self")], &[]),
            manifest("infer", &[], &[("output_path", "/tmp")]),
            manifest("infer", &[], &[("output_path", "/")]),
        ];
        for m in cases {
            assert!(matches!(check_manifest(&m), Err(ContractError::MountPath { .. })), "{m:?}");
        }
        // Beside each other, or under /tmp, is fine.
        let ok = manifest("infer", &[("data_path", "/data")], &[("output_path", "/database")]);
        assert_eq!(check_manifest(&ok), Ok(()));
        let ok = manifest("infer", &[("data_path", "/data")], &[("output_path", "/tmp/out")]);
        assert_eq!(check_manifest(&ok), Ok(()));
    }

    #[test]
    fn a_parameter_or_task_declared_twice_is_refused() {
        let m = manifest("infer", &[("data_path", "/a")], &[("output_path", "/b")]);
        let mut twice = m.clone();
        twice.tasks.push(m.tasks[0].clone());
        assert!(matches!(check_manifest(&twice), Err(ContractError::DuplicateTask { .. })));
        let m = manifest("infer", &[("data_path", "/a"), ("data_path", "/c")], &[]);
        assert!(matches!(check_manifest(&m), Err(ContractError::DuplicateParam { .. })));
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions_and_swaps() {
        assert_eq!(edit_distance("evaluate", "evaluate"), 0);
        assert_eq!(edit_distance("evalute", "evaluate"), 1);
        assert_eq!(edit_distance("infre", "infer"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("containr_type", "container_type"), 1);
    }
}
