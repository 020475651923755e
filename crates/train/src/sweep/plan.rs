//! The plan file and its expansion into runs (names, overrides, run directories).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::config::ConfigError;

/// A plan file as written (see the module documentation of [`crate::sweep`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The sweep's name: its runs go to `out_dir/name/<run name>`.
    pub name: String,
    /// Root of the sweep's results, relative to the plan file's directory unless absolute.
    #[serde(default = "PlanFile::default_out_dir")]
    pub out_dir: PathBuf,
    /// Config files or globs, relative to the plan file's directory unless absolute.
    pub configs: Vec<String>,
    /// Seeds; each run sets `run.seed` to one of them.
    #[serde(default = "PlanFile::default_seeds")]
    pub seeds: Vec<u64>,
    /// `KEY=VALUE` overrides for every run, as `train --set` takes them.
    #[serde(default)]
    pub set: Vec<String>,
    /// Dotted key → the list of values it takes; the runs cover the cartesian product.
    #[serde(default)]
    pub grid: BTreeMap<String, toml::Value>,
}

impl PlanFile {
    fn default_out_dir() -> PathBuf {
        PathBuf::from("results")
    }

    fn default_seeds() -> Vec<u64> {
        vec![0]
    }

    /// Parses plan text; errors name the key (`path` names the file in them).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file = path.display();
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError(format!("plan {file}: malformed TOML: {e}")))?;
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            if key == "." || key.is_empty() {
                ConfigError(format!("plan {file}: {inner}"))
            } else {
                ConfigError(format!("plan {file}: key `{key}`: {inner}"))
            }
        })
    }
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its position in the sweep (0-based): `--task` and the Slurm array task id.
    pub index: usize,
    /// Its name, the last part of its run directory.
    pub name: String,
    /// The config file.
    pub config: PathBuf,
    /// Its `--set KEY=VALUE` overrides: the plan's `set`, the grid point's, then `run.seed`.
    pub set: Vec<String>,
    /// The run directory.
    pub dir: PathBuf,
}

/// A plan with its runs expanded.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The sweep's name.
    pub name: String,
    /// The plan file (absolute).
    pub path: PathBuf,
    /// The sweep's directory, `out_dir/name` (absolute): the run directories, `sweep.sbatch`.
    pub dir: PathBuf,
    /// Whether `--out-dir` replaced the plan's `out_dir` (a Slurm script then passes it on).
    pub out_dir_override: Option<PathBuf>,
    /// The runs, in order.
    pub runs: Vec<Run>,
}

impl Plan {
    /// Reads the plan file at `path` and expands it: configs resolved against the plan file's
    /// directory, results under `out_dir` (or `out_dir_override`, relative to the working
    /// directory).
    pub fn load(path: &Path, out_dir_override: Option<&Path>) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read plan {}: {e}", path.display())))?;
        let absolute = std::fs::canonicalize(path)
            .with_context(|| format!("cannot resolve the path of plan {}", path.display()))?;
        let file = PlanFile::parse(&text, path)?;
        let base = absolute.parent().unwrap_or(Path::new("/"));
        let root = match out_dir_override {
            Some(dir) => {
                let cwd = std::env::current_dir()
                    .and_then(std::fs::canonicalize)
                    .context("cannot resolve the working directory")?;
                join_normalized(&cwd, dir)
            }
            None => join_normalized(base, &file.out_dir),
        };
        let configs = resolve_configs(&file.configs, base)
            .map_err(|e| ConfigError(format!("plan {}: {e}", path.display())))?;
        let runs = expand(&file, &configs, &root)
            .map_err(|e| ConfigError(format!("plan {}: {e}", path.display())))?;
        Ok(Self {
            dir: root.join(&file.name),
            name: file.name,
            path: absolute,
            out_dir_override: out_dir_override.map(|_| root),
            runs,
        })
    }
}

/// `rel` joined to the directory `base`, which must hold no symbolic links (a canonical path):
/// the `.` components and the `..` components that lead `rel` are resolved lexically, exactly
/// (others are kept). An absolute `rel` replaces `base`.
fn join_normalized(base: &Path, rel: &Path) -> PathBuf {
    let (base, rest) = split_normalized(base, rel);
    base.join(rest)
}

/// [`join_normalized`] as two parts: the directory (`base` with the leading `..` of `rel`
/// applied) and the rest of `rel`.
fn split_normalized(base: &Path, rel: &Path) -> (PathBuf, PathBuf) {
    let mut base = base.to_path_buf();
    let mut rest = PathBuf::new();
    for part in rel.components() {
        match part {
            Component::Prefix(_) | Component::RootDir => {
                base = PathBuf::from(part.as_os_str());
                rest = PathBuf::new();
            }
            Component::CurDir => {}
            Component::ParentDir if rest.as_os_str().is_empty() => {
                base.pop();
            }
            other => rest.push(other),
        }
    }
    (base, rest)
}

/// The config files that `patterns` (paths or globs, relative to `base` unless absolute) name:
/// sorted, each once. A glob that matches no file, or a plain path that is not a file, is an
/// error naming it.
pub fn resolve_configs(patterns: &[String], base: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if patterns.is_empty() {
        return Err(ConfigError(
            "key `configs`: lists no config file (give paths or globs)".into(),
        ));
    }
    let mut found = Vec::new();
    for pattern in patterns {
        let (dir, rest) = split_normalized(base, Path::new(pattern));
        if !pattern.contains(['*', '?', '[']) {
            let path = dir.join(rest);
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "key `configs`: {pattern:?}: no such file ({})",
                    path.display()
                )));
            }
            found.push(path);
            continue;
        }
        let (Some(dir_text), Some(rest_text)) = (dir.to_str(), rest.to_str()) else {
            return Err(ConfigError(format!(
                "key `configs`: {pattern:?}: the path is not UTF-8"
            )));
        };
        let glob_text = format!(
            "{}/{rest_text}",
            glob::Pattern::escape(dir_text).trim_end_matches('/')
        );
        let options = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..glob::MatchOptions::new()
        };
        let paths = glob::glob_with(&glob_text, options).map_err(|e| {
            ConfigError(format!("key `configs`: {pattern:?}: not a valid glob: {e}"))
        })?;
        let mut matched = 0;
        for entry in paths {
            let path = entry
                .map_err(|e| ConfigError(format!("key `configs`: {pattern:?}: cannot read {e}")))?;
            if path.is_file() {
                found.push(path);
                matched += 1;
            }
        }
        if matched == 0 {
            return Err(ConfigError(format!(
                "key `configs`: {pattern:?} matches no file ({glob_text})"
            )));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Expands a plan into its runs: `configs` × the grid's points × the seeds, in that order, each
/// run in `root/name/<run name>`. Refuses an empty seed list or grid list, `run.seed` in `set`
/// or the grid, a key both in `set` and the grid, and two runs of the same name.
pub fn expand(plan: &PlanFile, configs: &[PathBuf], root: &Path) -> Result<Vec<Run>, ConfigError> {
    check_name(&plan.name)?;
    if plan.seeds.is_empty() {
        return Err(ConfigError(
            "key `seeds`: lists no seed (leave it out for [0])".into(),
        ));
    }
    let mut set_keys = Vec::new();
    for (i, item) in plan.set.iter().enumerate() {
        let Some((key, _)) = item.split_once('=') else {
            return Err(ConfigError(format!(
                "key `set[{i}]`: {item:?} is not KEY=VALUE"
            )));
        };
        let key = key.trim();
        check_key(key).map_err(|e| ConfigError(format!("key `set[{i}]`: {item:?}: {e}")))?;
        set_keys.push(key.to_string());
    }
    let mut axes: Vec<(&str, &Vec<toml::Value>)> = Vec::new();
    for (key, values) in &plan.grid {
        check_key(key).map_err(|e| ConfigError(format!("key `grid.\"{key}\"`: {e}")))?;
        let Some(values) = values.as_array().filter(|v| !v.is_empty()) else {
            return Err(ConfigError(format!(
                "key `grid.\"{key}\"`: must be a non-empty list of values, got {values}"
            )));
        };
        if set_keys.iter().any(|k| k == key) {
            return Err(ConfigError(format!(
                "key `grid.\"{key}\"`: {key} is also in `set`; give it in one place"
            )));
        }
        axes.push((key, values));
    }
    let labels = grid_labels(&axes.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    let points = cartesian(&axes.iter().map(|(_, v)| v.len()).collect::<Vec<_>>());
    let dir = root.join(&plan.name);
    let mut runs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for config in configs {
        let stem = config.file_stem().and_then(|s| s.to_str()).ok_or_else(|| {
            ConfigError(format!(
                "key `configs`: {}: the file name is not UTF-8",
                config.display()
            ))
        })?;
        for point in &points {
            let mut name = sanitize(stem);
            let mut set = plan.set.clone();
            for ((label, (key, values)), &at) in labels.iter().zip(&axes).zip(point) {
                let value = &values[at];
                name += &format!("-{}={}", sanitize(label), sanitize(&name_text(value)));
                set.push(format!("{key}={value}"));
            }
            for &seed in &plan.seeds {
                let name = format!("{name}-seed{seed}");
                let mut set = set.clone();
                set.push(format!("run.seed={seed}"));
                let index = runs.len();
                if name.len() > 255 {
                    return Err(ConfigError(format!(
                        "run {index}: the name {name:?} is longer than a file name may be (255 \
                         bytes); shorten the config's file name or the grid's values"
                    )));
                }
                if let Some(&other) = seen.get(&name.to_lowercase()) {
                    let first: &Run = &runs[other];
                    return Err(ConfigError(format!(
                        "runs {other} and {index} would share the run directory {name:?} \
                         ({} with {} and {} with {}); rename a config or change the grid's \
                         values",
                        first.config.display(),
                        first.set.join(" "),
                        config.display(),
                        set.join(" ")
                    )));
                }
                seen.insert(name.to_lowercase(), index);
                runs.push(Run {
                    index,
                    dir: dir.join(&name),
                    name,
                    config: config.clone(),
                    set,
                });
            }
        }
    }
    Ok(runs)
}

/// Refuses a sweep name that is not a plain directory name of letters, digits, `.`, `_`, `+`,
/// `-` (it names a directory and the Slurm job).
fn check_name(name: &str) -> Result<(), ConfigError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if plain {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "key `name`: {name:?} is not a plain name (letters, digits, `.`, `_`, `+`, `-`; it \
             names the sweep's directory under out_dir and its Slurm job)"
        )))
    }
}

/// Refuses a dotted key with an empty part or whitespace, and `run.seed` (`seeds` sets it).
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || key
            .split('.')
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
    {
        return Err(format!("{key:?} is not a dotted config key"));
    }
    if key == "run.seed" {
        return Err("run.seed is set by `seeds`; list the seeds there".into());
    }
    Ok(())
}

/// The label of each grid key in run names: its last part, or the whole key where another grid
/// key has the same last part.
fn grid_labels(keys: &[&str]) -> Vec<String> {
    let last = |key: &str| key.rsplit('.').next().unwrap_or(key).to_string();
    keys.iter()
        .map(|key| {
            let shared = keys.iter().filter(|other| last(other) == last(key)).count() > 1;
            if shared { key.to_string() } else { last(key) }
        })
        .collect()
}

/// Every index tuple of lists of these lengths, the first index varying slowest (one empty
/// tuple for no lists).
fn cartesian(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut points = vec![Vec::new()];
    for &len in lengths {
        points = points
            .into_iter()
            .flat_map(|point| {
                (0..len).map(move |i| {
                    let mut next = point.clone();
                    next.push(i);
                    next
                })
            })
            .collect();
    }
    points
}

/// A grid value as it appears in a run name: strings unquoted, floats in Rust's shortest form
/// (`0.1`, `1e-5`), lists joined by `_`.
fn name_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items.iter().map(name_text).collect::<Vec<_>>().join("_"),
        other => other.to_string(),
    }
}

/// `text` with every character but ASCII letters, digits, `.`, `_`, `+`, `-` replaced by `_`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> PlanFile {
        PlanFile::parse(text, Path::new("p.toml")).unwrap()
    }

    fn configs(names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| PathBuf::from(format!("/c/{n}.toml")))
            .collect()
    }

    fn names(runs: &[Run]) -> Vec<&str> {
        runs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn defaults_are_results_and_seed_zero() {
        let p = plan("name = \"s\"\nconfigs = [\"a.toml\"]");
        assert_eq!(p.out_dir, PathBuf::from("results"));
        assert_eq!(p.seeds, [0]);
        assert!(p.set.is_empty() && p.grid.is_empty());
    }

    #[test]
    fn parse_errors_name_the_file_and_key() {
        let cases = [
            (
                "name = \"s\"\nconfigs = []\nseed = [1]",
                "unknown field `seed`",
            ),
            (
                "name = \"s\"\nconfigs = [\"a\"]\nseeds = [\"x\"]",
                "key `seeds[0]`",
            ),
            (
                "name = \"s\"\nconfigs = [\"a\"]\nseeds = [-1]",
                "key `seeds[0]`",
            ),
            ("configs = [\"a\"]", "missing field `name`"),
            ("name = \"s\"\nconfigs = \"a.toml\"", "key `configs`"),
            ("name = \"s\"\nconfigs = [\"a\"]\ngrid = 3", "key `grid`"),
            ("name = \"s\"\nconfigs = [", "malformed TOML"),
        ];
        for (text, expected) in cases {
            let err = PlanFile::parse(text, Path::new("plans/p.toml")).unwrap_err();
            let err = err.to_string();
            assert!(err.starts_with("plan plans/p.toml: "), "{err}");
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn runs_are_configs_times_grid_times_seeds_in_order() {
        let p = plan(
            r#"
name = "s"
configs = ["x"]
seeds = [0, 1]
set = ["training.epochs=1"]
[grid]
"optimizer.lr" = [0.1, 1e-5]
"model.hidden" = [[8, 4], [16]]
"#,
        );
        let runs = expand(&p, &configs(&["a", "b"]), Path::new("/out")).unwrap();
        assert_eq!(runs.len(), 2 * 2 * 2 * 2);
        assert_eq!(
            names(&runs)[..5],
            [
                "a-hidden=8_4-lr=0.1-seed0",
                "a-hidden=8_4-lr=0.1-seed1",
                "a-hidden=8_4-lr=1e-5-seed0",
                "a-hidden=8_4-lr=1e-5-seed1",
                "a-hidden=16-lr=0.1-seed0",
            ]
        );
        assert_eq!(runs[8].name, "b-hidden=8_4-lr=0.1-seed0");
        assert!(runs.iter().enumerate().all(|(i, r)| r.index == i));
        let run = &runs[3];
        assert_eq!(run.config, PathBuf::from("/c/a.toml"));
        assert_eq!(run.dir, PathBuf::from("/out/s/a-hidden=8_4-lr=1e-5-seed1"));
        assert_eq!(
            run.set,
            [
                "training.epochs=1",
                "model.hidden=[8, 4]",
                "optimizer.lr=0.00001",
                "run.seed=1"
            ]
        );
        // The --set values read back as the grid's values.
        let value: toml::Table = toml::from_str("v = 0.00001").unwrap();
        assert_eq!(value["v"].as_float(), Some(1e-5));
        // No grid: one point.
        let p = plan("name = \"s\"\nconfigs = [\"x\"]\nseeds = [3]");
        let runs = expand(&p, &configs(&["a", "b"]), Path::new("/out")).unwrap();
        assert_eq!(names(&runs), ["a-seed3", "b-seed3"]);
        assert_eq!(runs[1].set, ["run.seed=3"]);
    }

    #[test]
    fn names_are_sanitised_and_shared_key_ends_spelled_out() {
        let p = plan(
            r#"
name = "s"
configs = ["x"]
[grid]
"optimizer.lr" = [0.5]
"schedule.lr" = [2]
"data.path" = ["dir/my data.csv"]
"#,
        );
        let runs = expand(&p, &configs(&["my config"]), Path::new("/out")).unwrap();
        assert_eq!(
            names(&runs),
            ["my_config-path=dir_my_data.csv-optimizer.lr=0.5-schedule.lr=2-seed0"]
        );
        assert!(
            runs[0]
                .set
                .contains(&"data.path=\"dir/my data.csv\"".to_string())
        );
    }

    #[test]
    fn colliding_names_are_refused() {
        // Two values that sanitise to the same text.
        let p = plan("name = \"s\"\nconfigs = [\"x\"]\n[grid]\n\"data.path\" = [\"a/b\", \"a_b\"]");
        let err = expand(&p, &configs(&["c"]), Path::new("/o")).unwrap_err();
        assert!(
            err.0.contains("runs 0 and 1") && err.0.contains("c-path=a_b-seed0"),
            "{err}"
        );
        // Two configs of the same stem in different directories, names differing in case.
        let p = plan("name = \"s\"\nconfigs = [\"x\"]");
        let two = [PathBuf::from("/a/exp.toml"), PathBuf::from("/b/Exp.toml")];
        let err = expand(&p, &two, Path::new("/o")).unwrap_err();
        assert!(
            err.0.contains("/a/exp.toml") && err.0.contains("/b/Exp.toml"),
            "{err}"
        );
        // A seed listed twice.
        let p = plan("name = \"s\"\nconfigs = [\"x\"]\nseeds = [1, 1]");
        assert!(expand(&p, &configs(&["c"]), Path::new("/o")).is_err());
    }

    #[test]
    fn bad_seeds_sets_grids_and_names_are_refused_by_key() {
        let cases = [
            ("seeds = []", "key `seeds`"),
            ("set = [\"training.epochs\"]", "key `set[0]`"),
            ("set = [\"run.seed=3\"]", "run.seed is set by `seeds`"),
            (
                "grid = { \"run.seed\" = [1, 2] }",
                "run.seed is set by `seeds`",
            ),
            (
                "grid = { \"optimizer.lr\" = [] }",
                "key `grid.\"optimizer.lr\"`",
            ),
            ("grid = { \"optimizer.lr\" = 0.1 }", "non-empty list"),
            ("grid = { \"a..b\" = [1] }", "not a dotted config key"),
            (
                "set = [\"optimizer.lr=1\"]\ngrid = { \"optimizer.lr\" = [2] }",
                "also in `set`",
            ),
        ];
        for (extra, expected) in cases {
            let p = plan(&format!("name = \"s\"\nconfigs = [\"x\"]\n{extra}"));
            let err = expand(&p, &configs(&["c"]), Path::new("/o")).unwrap_err();
            assert!(err.0.contains(expected), "{extra}: {err}");
        }
        for name in ["", "a/b", "..", "/abs", "a b"] {
            let p = plan(&format!("name = {name:?}\nconfigs = [\"x\"]"));
            let err = expand(&p, &configs(&["c"]), Path::new("/o")).unwrap_err();
            assert!(err.0.contains("key `name`"), "{name}: {err}");
        }
    }

    #[test]
    fn configs_resolve_against_the_plan_directory_sorted_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("plans")).unwrap();
        std::fs::create_dir_all(root.join("configs/sub.toml")).unwrap();
        for name in ["b.toml", "a.toml", ".hidden.toml", "c.txt"] {
            std::fs::write(root.join("configs").join(name), "").unwrap();
        }
        let base = root.join("plans");
        let patterns = [
            "../configs/*.toml".to_string(),
            "../configs/a.toml".to_string(),
        ];
        let found = resolve_configs(&patterns, &base).unwrap();
        assert_eq!(
            found,
            [root.join("configs/a.toml"), root.join("configs/b.toml")]
        );
        let absolute = format!("{}/configs/b.toml", root.display());
        assert_eq!(
            resolve_configs(&[absolute], &base).unwrap(),
            [root.join("configs/b.toml")]
        );
        let err = resolve_configs(&["../configs/z*.toml".into()], &base).unwrap_err();
        assert!(
            err.0.contains("\"../configs/z*.toml\" matches no file"),
            "{err}"
        );
        let err = resolve_configs(&["missing.toml".into()], &base).unwrap_err();
        assert!(err.0.contains("\"missing.toml\": no such file"), "{err}");
        assert!(resolve_configs(&[], &base).is_err());
    }

    #[test]
    fn paths_join_with_leading_parent_components_resolved() {
        let base = Path::new("/w/main/plans");
        assert_eq!(
            join_normalized(base, Path::new("../results")),
            PathBuf::from("/w/main/results")
        );
        assert_eq!(
            join_normalized(base, Path::new("./a/../b")),
            PathBuf::from("/w/main/plans/a/../b")
        );
        assert_eq!(
            join_normalized(base, Path::new("/abs/x")),
            PathBuf::from("/abs/x")
        );
    }
}
