//! Container manifests: MedPerf's container config and the legacy `mlcube.yaml`,
//! parsed into the protocol's [`Manifest`] plus what the runner needs to start each
//! task ([`RunArgs`]).
//!
//! MedPerf container config (`container_type`, `image`, `tasks.<name>` with
//! `input_volumes` / `output_volumes`, each `{mount_path, type}`, and optional
//! `run_args` with `command`, `entrypoint`, `environment`, `shm_size`, `gpus`): every
//! volume is mounted at its `mount_path`; the command is `run_args.command` or the
//! image's own.
//!
//! Legacy MLCube (`docker.image`, `tasks.<name>.parameters.inputs` / `.outputs`, each
//! a default path or `{type, default}`, optional `entrypoint`): volume `i` is mounted
//! at `/mlcube_io<i>` and the container gets `<task> --<name>=<container path>...`, as
//! MLCube and MedPerf do. A parameter without a type is a directory when its default
//! ends in `/` or has no extension, else a file.

use std::collections::BTreeMap;
use std::path::Path;

use protocol::contract::check_manifest;
use protocol::limits::{LIST_LEN_MAX, NAME_BYTES_MAX, TEXT_BYTES_MAX};
use protocol::record::{Manifest, ManifestFormat, Param, ParamKind, Task};
use serde_yaml::{Mapping, Value};

use crate::error::{ManifestError, RunnerError};

/// Largest manifest file read.
pub const MANIFEST_BYTES_MAX: u64 = 256 * 1024;
/// Most arguments or environment entries in one task's run_args.
pub const RUN_ARGS_LEN_MAX: usize = 256;

pub use protocol::record::RunArgs;

/// A parsed manifest: the protocol's [`Manifest`] (what a container record carries),
/// the image reference it names, and per-task run arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub image: String,
    pub manifest: Manifest,
    pub run_args: BTreeMap<String, RunArgs>,
}

impl ContainerSpec {
    /// A spec from a record's manifest, checked against MedPerf's container contract
    /// exactly as a local manifest file is (a record's manifest is the submitter's
    /// word, not the runner's).
    pub fn from_manifest(
        image: impl Into<String>,
        manifest: Manifest,
    ) -> Result<Self, ManifestError> {
        check_manifest(&manifest)?;
        let run_args = manifest
            .tasks
            .iter()
            .filter(|t| t.run_args != RunArgs::default())
            .map(|t| (t.name.clone(), t.run_args.clone()))
            .collect();
        Ok(Self { image: image.into(), manifest, run_args })
    }

    /// The task called `name`, or an error listing the tasks there are.
    pub fn task(&self, name: &str) -> Result<&Task, ManifestError> {
        self.manifest.task(name).ok_or_else(|| ManifestError::UnknownTask {
            task: name.to_string(),
            available: self
                .manifest
                .tasks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn run_args(&self, task: &str) -> RunArgs {
        self.run_args.get(task).cloned().unwrap_or_default()
    }
}

/// Whether two image references name the same image as the engine reads them: equal,
/// or equal once a reference without a tag or digest is given the tag `latest`, and
/// Docker Hub's implied `docker.io/` and `docker.io/library/` prefixes are dropped.
pub fn same_image(a: &str, b: &str) -> bool {
    fn normal(r: &str) -> String {
        let r = r.trim();
        let r = r.strip_prefix("docker.io/").unwrap_or(r);
        let r = r.strip_prefix("library/").unwrap_or(r);
        let last = r.rsplit('/').next().unwrap_or(r);
        if last.contains(':') || r.contains('@') { r.to_string() } else { format!("{r}:latest") }
    }
    normal(a) == normal(b)
}

/// Read and parse a manifest file (either format).
pub fn load_manifest(path: &Path) -> Result<ContainerSpec, RunnerError> {
    let len = std::fs::metadata(path).map_err(RunnerError::io(path))?.len();
    if len > MANIFEST_BYTES_MAX {
        return Err(ManifestError::TooLarge(len).into());
    }
    let text = std::fs::read_to_string(path).map_err(RunnerError::io(path))?;
    Ok(parse_manifest(&text)?)
}

/// Parse a manifest in either format; the format is told by its keys.
pub fn parse_manifest(yaml: &str) -> Result<ContainerSpec, ManifestError> {
    if yaml.len() as u64 > MANIFEST_BYTES_MAX {
        return Err(ManifestError::TooLarge(yaml.len() as u64));
    }
    let root: Value = serde_yaml::from_str(yaml).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let root = root
        .as_mapping()
        .ok_or_else(|| ManifestError::Yaml("the top level is not a mapping".into()))?;
    let spec = if let Some(image) = get(root, "image").and_then(Value::as_str) {
        known_keys(root, CONFIG_KEYS, "the container config")?;
        check_container_type(root)?;
        parse_container_config(image, root)?
    } else if let Some(image) =
        get(root, "docker").and_then(|d| d.get("image")).and_then(Value::as_str)
    {
        known_keys(root, MLCUBE_KEYS, "mlcube.yaml")?;
        parse_mlcube(image, root)?
    } else {
        return Err(ManifestError::NoImage);
    };
    check_bounds(&spec)?;
    check_manifest(&spec.manifest)?;
    Ok(spec)
}

/// Keys of a MedPerf container config, of each of its tasks and of each volume.
const CONFIG_KEYS: &[&str] = &["container_type", "image", "tasks"];
const CONFIG_TASK_KEYS: &[&str] = &["run_args", "input_volumes", "output_volumes"];
const VOLUME_KEYS: &[&str] = &["mount_path", "type"];
/// Keys of a legacy `mlcube.yaml`, of each task and of its `parameters`.
const MLCUBE_KEYS: &[&str] =
    &["name", "description", "authors", "platform", "docker", "singularity", "tasks"];
const MLCUBE_TASK_KEYS: &[&str] = &["parameters", "entrypoint"];
const MLCUBE_PARAMETER_KEYS: &[&str] = &["inputs", "outputs"];
/// MedPerf's container types, and the one this runner runs today.
const CONTAINER_TYPES: &[&str] = &[
    "DockerImage",
    "DockerArchive",
    "EncryptedDockerArchive",
    "SingularityFile",
    "EncryptedSingularityFile",
];
const CONTAINER_TYPE_SUPPORTED: &str = "DockerImage";

/// Refuse a key that is not in `allowed`, naming the nearest allowed one: a typo
/// caught here would otherwise fail much later with an unrelated message.
fn known_keys(m: &Mapping, allowed: &[&'static str], place: &str) -> Result<(), ManifestError> {
    for k in m.keys() {
        let key = k.as_str().map(str::to_string).unwrap_or_else(|| format!("{k:?}"));
        if !allowed.contains(&key.as_str()) {
            return Err(ManifestError::UnknownKey {
                place: place.into(),
                suggestion: protocol::contract::nearest(&key, allowed.iter().copied()),
                key,
                allowed: allowed.join(", "),
            });
        }
    }
    Ok(())
}

/// `container_type`, when given, must be one MedPerf knows and this runner runs (a
/// config without it is taken as a `DockerImage`).
fn check_container_type(root: &Mapping) -> Result<(), ManifestError> {
    let Some(v) = get(root, "container_type") else { return Ok(()) };
    let found = v.as_str().unwrap_or("(not a string)");
    if found == CONTAINER_TYPE_SUPPORTED {
        return Ok(());
    }
    Err(ManifestError::ContainerType {
        found: found.into(),
        known: CONTAINER_TYPES.contains(&found),
        suggestion: protocol::contract::nearest(found, CONTAINER_TYPES.iter().copied()),
    })
}

fn get<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.get(Value::String(key.to_string()))
}

fn tasks_of(root: &Mapping) -> Result<Vec<(String, &Mapping)>, ManifestError> {
    let tasks = get(root, "tasks").and_then(Value::as_mapping).ok_or(ManifestError::NoTasks)?;
    if tasks.is_empty() {
        return Err(ManifestError::NoTasks);
    }
    tasks
        .iter()
        .map(|(k, v)| {
            let name = k
                .as_str()
                .ok_or_else(|| ManifestError::Yaml("a task name is not a string".into()))?
                .to_string();
            let body = v.as_mapping().ok_or_else(|| ManifestError::Task {
                task: name.clone(),
                reason: "is not a mapping".into(),
            })?;
            Ok((name, body))
        })
        .collect()
}

fn kind_of(task: &str, param: &str, v: Option<&Value>) -> Result<Option<ParamKind>, ManifestError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s == "file" => Ok(Some(ParamKind::File)),
        Some(Value::String(s)) if s == "directory" => Ok(Some(ParamKind::Directory)),
        Some(other) => Err(ManifestError::BadType {
            task: task.into(),
            param: param.into(),
            found: serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
        }),
    }
}

fn parse_container_config(image: &str, root: &Mapping) -> Result<ContainerSpec, ManifestError> {
    let mut tasks = Vec::new();
    let mut run_args = BTreeMap::new();
    for (name, body) in tasks_of(root)? {
        known_keys(body, CONFIG_TASK_KEYS, &format!("task `{name}`"))?;
        let mut io = [Vec::new(), Vec::new()];
        for (slot, key) in ["input_volumes", "output_volumes"].iter().enumerate() {
            let Some(volumes) = get(body, key) else { continue };
            let volumes = volumes.as_mapping().ok_or_else(|| ManifestError::Task {
                task: name.clone(),
                reason: format!("`{key}` is not a mapping"),
            })?;
            for (pk, pv) in volumes {
                let param = pk.as_str().ok_or_else(|| ManifestError::Task {
                    task: name.clone(),
                    reason: format!("a name in `{key}` is not a string"),
                })?;
                let pv = pv.as_mapping().ok_or_else(|| ManifestError::MissingMountPath {
                    task: name.clone(),
                    param: param.into(),
                })?;
                known_keys(pv, VOLUME_KEYS, &format!("task `{name}`, volume `{param}`"))?;
                let mount_path =
                    get(pv, "mount_path").and_then(Value::as_str).ok_or_else(|| {
                        ManifestError::MissingMountPath { task: name.clone(), param: param.into() }
                    })?;
                check_mount_path(&name, param, mount_path)?;
                let kind = kind_of(&name, param, get(pv, "type"))?.ok_or_else(|| {
                    ManifestError::BadType {
                        task: name.clone(),
                        param: param.into(),
                        found: "(missing)".into(),
                    }
                })?;
                io[slot].push(Param {
                    name: param.into(),
                    kind,
                    mount_path: Some(mount_path.into()),
                    default: None,
                    optional: false,
                });
            }
        }
        if let Some(ra) = get(body, "run_args") {
            run_args.insert(name.clone(), parse_run_args(&name, ra)?);
        }
        let [inputs, outputs] = io;
        let ra = run_args.get(&name).cloned().unwrap_or_default();
        tasks.push(Task { name, inputs, outputs, run_args: ra });
    }
    Ok(ContainerSpec {
        image: image.into(),
        manifest: Manifest { format: ManifestFormat::ContainerConfig, tasks },
        run_args,
    })
}

fn check_mount_path(task: &str, param: &str, path: &str) -> Result<(), ManifestError> {
    let bad = !path.starts_with('/')
        || path == "/"
        || path.split('/').any(|c| c == "..")
        || path.contains(':')
        || path.contains('\0');
    if bad {
        return Err(ManifestError::BadMountPath {
            task: task.into(),
            param: param.into(),
            path: path.into(),
        });
    }
    Ok(())
}

fn parse_run_args(task: &str, v: &Value) -> Result<RunArgs, ManifestError> {
    let m = v.as_mapping().ok_or_else(|| ManifestError::Task {
        task: task.into(),
        reason: "`run_args` is not a mapping".into(),
    })?;
    let mut out = RunArgs::default();
    for (k, v) in m {
        let key = k.as_str().unwrap_or("?");
        match key {
            "command" => out.command = Some(words(task, key, v)?),
            "entrypoint" => out.entrypoint = Some(words(task, key, v)?),
            "environment" => {
                let env = v.as_mapping().ok_or_else(|| ManifestError::Task {
                    task: task.into(),
                    reason: "`run_args.environment` is not a mapping".into(),
                })?;
                for (ek, ev) in env {
                    let (Some(ek), Some(ev)) = (ek.as_str(), scalar(ev)) else {
                        return Err(ManifestError::Task {
                            task: task.into(),
                            reason: "`run_args.environment` entries must be name: value".into(),
                        });
                    };
                    out.environment.insert(ek.to_string(), ev);
                }
            }
            // Accepted as in MedPerf; MedMesh runs on CPU with its own memory limits.
            "shm_size" | "gpus" => tracing::debug!(task, key, "run_args entry ignored"),
            _ => return Err(ManifestError::RunArg { task: task.into(), key: key.into() }),
        }
    }
    Ok(out)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A command as a list, or as one string split the way a POSIX shell splits words
/// (quotes group, backslash escapes; no expansion).
fn words(task: &str, key: &str, v: &Value) -> Result<Vec<String>, ManifestError> {
    let bad = || ManifestError::Task {
        task: task.into(),
        reason: format!("`run_args.{key}` must be a string or a list of strings"),
    };
    match v {
        Value::Sequence(items) => items.iter().map(|i| scalar(i).ok_or_else(bad)).collect(),
        Value::String(s) => split_words(s).ok_or_else(|| ManifestError::Task {
            task: task.into(),
            reason: format!("`run_args.{key}` has an unclosed quote"),
        }),
        _ => Err(bad()),
    }
}

pub(crate) fn split_words(s: &str) -> Option<Vec<String>> {
    let (mut out, mut cur, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

fn parse_mlcube(image: &str, root: &Mapping) -> Result<ContainerSpec, ManifestError> {
    let mut tasks = Vec::new();
    let mut run_args = BTreeMap::new();
    for (name, body) in tasks_of(root)? {
        known_keys(body, MLCUBE_TASK_KEYS, &format!("task `{name}`"))?;
        let params = get(body, "parameters").and_then(Value::as_mapping).ok_or_else(|| {
            ManifestError::Task { task: name.clone(), reason: "has no `parameters` mapping".into() }
        })?;
        known_keys(params, MLCUBE_PARAMETER_KEYS, &format!("task `{name}`, `parameters`"))?;
        let mut io = [Vec::new(), Vec::new()];
        for (slot, key) in ["inputs", "outputs"].iter().enumerate() {
            let Some(list) = get(params, key) else { continue };
            let list = list.as_mapping().ok_or_else(|| ManifestError::Task {
                task: name.clone(),
                reason: format!("`parameters.{key}` is not a mapping"),
            })?;
            for (pk, pv) in list {
                let param = pk.as_str().ok_or_else(|| ManifestError::Task {
                    task: name.clone(),
                    reason: format!("a name in `parameters.{key}` is not a string"),
                })?;
                let (kind, default) = match pv {
                    Value::String(d) => (None, d.clone()),
                    Value::Mapping(m) => {
                        let default =
                            get(m, "default").and_then(Value::as_str).unwrap_or(param).to_string();
                        (kind_of(&name, param, get(m, "type"))?, default)
                    }
                    _ => {
                        return Err(ManifestError::Task {
                            task: name.clone(),
                            reason: format!(
                                "parameter `{param}` is neither a path nor {{type, default}}"
                            ),
                        });
                    }
                };
                let kind = kind.unwrap_or_else(|| infer_kind(&default));
                io[slot].push(Param {
                    name: param.into(),
                    kind,
                    mount_path: None,
                    default: Some(default),
                    optional: false,
                });
            }
        }
        if let Some(ep) = get(body, "entrypoint") {
            let mut w = words(&name, "entrypoint", ep)?;
            if !w.is_empty() {
                let rest = w.split_off(1);
                run_args.insert(
                    name.clone(),
                    RunArgs {
                        entrypoint: Some(w),
                        command: Some(rest),
                        environment: BTreeMap::new(),
                    },
                );
            }
        }
        let [inputs, outputs] = io;
        let ra = run_args.get(&name).cloned().unwrap_or_default();
        tasks.push(Task { name, inputs, outputs, run_args: ra });
    }
    Ok(ContainerSpec {
        image: image.into(),
        manifest: Manifest { format: ManifestFormat::Mlcube, tasks },
        run_args,
    })
}

fn infer_kind(default: &str) -> ParamKind {
    if default.ends_with('/') {
        return ParamKind::Directory;
    }
    let last = default.rsplit('/').next().unwrap_or(default);
    if last.contains('.') { ParamKind::File } else { ParamKind::Directory }
}

fn check_bounds(spec: &ContainerSpec) -> Result<(), ManifestError> {
    let too = |task: &str, what: &str| ManifestError::Task {
        task: task.into(),
        reason: format!("{what} is too long"),
    };
    if spec.image.len() > TEXT_BYTES_MAX || spec.manifest.tasks.len() > LIST_LEN_MAX {
        return Err(ManifestError::Task {
            task: "*".into(),
            reason: "image reference or task list is too long".into(),
        });
    }
    for t in &spec.manifest.tasks {
        if t.name.len() > NAME_BYTES_MAX {
            return Err(too(&t.name, "the task name"));
        }
        if t.inputs.len() + t.outputs.len() > LIST_LEN_MAX {
            return Err(too(&t.name, "the parameter list"));
        }
        for p in t.inputs.iter().chain(&t.outputs) {
            if p.name.len() > NAME_BYTES_MAX
                || p.mount_path.as_ref().is_some_and(|m| m.len() > TEXT_BYTES_MAX)
                || p.default.as_ref().is_some_and(|d| d.len() > TEXT_BYTES_MAX)
            {
                return Err(too(&t.name, &format!("parameter `{}`", p.name)));
            }
        }
    }
    for (task, ra) in &spec.run_args {
        let n = ra.command.as_ref().map_or(0, Vec::len)
            + ra.entrypoint.as_ref().map_or(0, Vec::len)
            + ra.environment.len();
        if n > RUN_ARGS_LEN_MAX {
            return Err(too(task, "run_args"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_container_rebuilt_from_its_record_keeps_its_run_args() {
        let yaml = "image: x\ntasks:\n  infer:\n    run_args:\n      command: python3 infer.py --fast\n      environment:\n        MODE: eval\n    input_volumes:\n      data_path:\n        mount_path: /in\n        type: directory\n    output_volumes:\n      output_path:\n        mount_path: /out\n        type: directory\n";
        let parsed = parse_manifest(yaml).unwrap();
        assert_eq!(
            parsed.run_args("infer").command,
            Some(vec!["python3".to_string(), "infer.py".into(), "--fast".into()])
        );
        let rebuilt = ContainerSpec::from_manifest("x", parsed.manifest.clone()).unwrap();
        assert_eq!(rebuilt.run_args, parsed.run_args);
        assert_eq!(
            rebuilt.run_args("infer").environment.get("MODE").map(String::as_str),
            Some("eval")
        );
    }

    use super::*;

    #[test]
    fn an_image_reference_agrees_with_its_implied_tag_and_registry() {
        assert!(same_image("my/model:1", "my/model:1"));
        assert!(same_image("my/model", "my/model:latest"));
        assert!(same_image("docker.io/library/debian:12", "debian:12"));
        assert!(same_image("localhost:5000/m", "localhost:5000/m:latest"));
        assert!(!same_image("my/model:1", "my/model:2"));
        assert!(!same_image("my/model:1", "other/model:1"));
        assert!(!same_image("localhost:5000/m", "localhost:5000/m:1"));
    }

    #[test]
    fn a_medperf_container_config_parses_with_mount_paths_types_and_command() {
        let spec = parse_manifest(include_str!("../../examples/preparator/container_config.yaml"))
            .unwrap();
        assert_eq!(spec.image, "medmesh/example-preparator:1");
        assert_eq!(spec.manifest.format, ManifestFormat::ContainerConfig);
        let prepare = spec.task("prepare").unwrap();
        assert_eq!(prepare.inputs.len(), 3);
        assert_eq!(prepare.outputs[0].mount_path.as_deref(), Some("/mlcommons/volumes/data"));
        assert_eq!(spec.task("statistics").unwrap().outputs[0].kind, ParamKind::File);
        assert_eq!(spec.run_args("prepare").command, Some(vec!["prepare".to_string()]));
    }

    #[test]
    fn a_legacy_mlcube_yaml_parses_with_defaults_and_inferred_types() {
        let spec = parse_manifest(include_str!("../../examples/metrics/mlcube.yaml")).unwrap();
        assert_eq!(spec.manifest.format, ManifestFormat::Mlcube);
        let t = spec.task("evaluate").unwrap();
        let kinds: Vec<_> = t.inputs.iter().map(|p| (p.name.as_str(), p.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("predictions", ParamKind::Directory),
                ("labels", ParamKind::Directory),
                ("parameters_file", ParamKind::File)
            ]
        );
        assert_eq!(t.outputs[0].default.as_deref(), Some("results.yaml"));
    }

    #[test]
    fn a_command_string_splits_like_a_shell() {
        assert_eq!(
            split_words(r#"python3 /p/main.py --x="a b" 'c d'"#).unwrap(),
            vec!["python3", "/p/main.py", "--x=a b", "c d"]
        );
        assert_eq!(split_words("unclosed 'quote"), None);
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_reason() {
        let cases = [
            ("tasks: {}\n", "neither"),
            ("image: x\n", "no tasks"),
            (
                "image: x\ntasks:\n  infer:\n    input_volumes:\n      data_path:\n        type: directory\n",
                "mount_path",
            ),
            (
                "image: x\ntasks:\n  infer:\n    input_volumes:\n      data_path:\n        mount_path: /d\n        type: folder\n",
                "`folder`",
            ),
            (
                "image: x\ntasks:\n  infer:\n    input_volumes:\n      data_path:\n        mount_path: relative\n        type: file\n",
                "absolute",
            ),
            ("image: x\ntasks:\n  infer:\n    run_args:\n      privileged: true\n", "privileged"),
            ("image: [unclosed\n", "YAML"),
        ];
        for (yaml, expected) in cases {
            let err = parse_manifest(yaml).unwrap_err().to_string();
            assert!(err.contains(expected), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn a_manifest_that_declares_a_known_input_as_an_output_is_refused_in_either_format() {
        let config = "image: x\ntasks:\n  infer:\n    output_volumes:\n      data_path:\n        mount_path: /mlcommons/volumes/data\n        type: directory\n";
        let mlcube = "docker:\n  image: x\ntasks:\n  prepare:\n    parameters:\n      outputs:\n        labels_path: labels/\n";
        for (yaml, input) in [(config, "data_path"), (mlcube, "labels_path")] {
            let err = parse_manifest(yaml).unwrap_err();
            assert!(
                matches!(&err, ManifestError::Contract(protocol::contract::ContractError::InputAsOutput { param, .. }) if param == input),
                "{err}"
            );
            assert!(err.to_string().contains("always mounted read-only"), "{err}");
        }
    }

    #[test]
    fn a_typo_in_a_key_a_task_or_the_container_type_is_refused_with_the_nearest_known_name() {
        let good = include_str!("../../examples/model_logistic/container_config.yaml");
        let cases = [
            (
                good.replace("container_type:", "containr_type:"),
                "`containr_type` (did you mean `container_type`?)",
            ),
            (
                good.replace("input_volumes:", "input_volume:"),
                "`input_volume` (did you mean `input_volumes`?)",
            ),
            (
                good.replace("  infer:", "  infre:"),
                "`infre` is not one MedPerf runs (did you mean `infer`?)",
            ),
            (
                good.replace(
                    "mount_path: /mlcommons/volumes/data",
                    "mount_pth: /mlcommons/volumes/data",
                ),
                "did you mean `mount_path`",
            ),
            (good.replace("DockerImage", "DockerImg"), "(did you mean `DockerImage`?)"),
            (good.replace("DockerImage", "SingularityFile"), "not run by MedMesh yet"),
            (
                include_str!("../../examples/metrics/mlcube.yaml")
                    .replace("  evaluate:", "  evalute:"),
                "(did you mean `evaluate`?)",
            ),
        ];
        for (yaml, expected) in cases {
            let err = parse_manifest(&yaml).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in: {err}");
        }
        assert!(parse_manifest(good).is_ok());
    }

    #[test]
    fn an_unknown_task_names_the_tasks_there_are() {
        let spec =
            parse_manifest(include_str!("../../examples/metrics/container_config.yaml")).unwrap();
        let err = spec.task("infer").unwrap_err().to_string();
        assert!(err.contains("no task `infer`") && err.contains("evaluate"), "{err}");
    }
}
