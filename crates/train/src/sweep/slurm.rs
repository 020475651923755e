//! `--slurm`: the sweep as a Slurm array job script, one task per run, and the record of the
//! runs it was written for.

use std::path::Path;

use anyhow::{Context, Result};

use super::plan::Plan;
use super::{SweepArgs, SweepExit};
use crate::config::ConfigError;

/// The array job script's file name, in the sweep's directory.
pub const SCRIPT_FILE: &str = "sweep.sbatch";

/// The file, in the sweep's directory, listing the run names (one a line, in task order) that
/// `--slurm` wrote the script for; `--task` refuses to run when the plan expands otherwise.
pub const MANIFEST_FILE: &str = "sweep.runs";

/// The text of the array job script of `plan`: task K runs `<train> sweep <plan> --task K`.
/// `train` is the binary's path, `max_parallel` the most tasks at once, `workdir` the tasks'
/// working directory (paths inside configs are from it); `threads` (`--threads`) is passed on.
pub fn sbatch_script(
    plan: &Plan,
    train: &str,
    max_parallel: u32,
    workdir: &Path,
    threads: Option<u32>,
) -> String {
    let last = plan.runs.len().saturating_sub(1);
    let script = plan.dir.join(SCRIPT_FILE);
    let mut command = vec![
        shell_quote(train),
        "sweep".into(),
        shell_quote(&plan.path.to_string_lossy()),
    ];
    if let Some(dir) = &plan.out_dir_override {
        command.extend(["--out-dir".into(), shell_quote(&dir.to_string_lossy())]);
    }
    if let Some(threads) = threads {
        command.extend(["--threads".into(), threads.to_string()]);
    }
    command.extend(["--task".into(), "\"$SLURM_ARRAY_TASK_ID\"".into()]);
    format!(
        r#"#!/bin/bash
# Slurm array job of the sweep {name} ({count} runs), written by `train sweep PLAN --slurm`.
# Submit it with:   sbatch {script}
# Follow it with:   {list}
#
# Task K runs run K of the plan (as `--list` numbers them) with `train sweep PLAN --task K`: a
# finished run is skipped, an interrupted one resumes from its checkpoint, any other starts
# afresh, its output appended to <run dir>/train.log. SIGTERM two minutes before the time limit
# (--signal) makes the run checkpoint and stop; a task requeued (--requeue: node failure,
# preemption) or this script submitted again resumes where each run stopped.
#SBATCH --job-name={name}
#SBATCH --array=0-{last}%{max_parallel}
#SBATCH --requeue
#SBATCH --signal=B:TERM@120
#SBATCH --output={output}
#SBATCH --chdir={workdir}
# The resources of one run: edit them and remove one '#' to use a line.
##SBATCH --time=04:00:00
##SBATCH --cpus-per-task=4
##SBATCH --mem=8G
##SBATCH --partition=PARTITION
##SBATCH --account=ACCOUNT

set -euo pipefail
export RAYON_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-1}}
exec {command}
"#,
        name = plan.name,
        count = plan.runs.len(),
        script = shell_quote(&script.to_string_lossy()),
        list = format_args!(
            "{} sweep {} --list",
            shell_quote(train),
            shell_quote(&plan.path.to_string_lossy())
        ),
        output = sbatch_path(&plan.dir.to_string_lossy(), "slurm-%A_%a.out"),
        workdir = sbatch_path(&workdir.to_string_lossy(), ""),
        command = command.join(" "),
    )
}

/// `--slurm`: writes the script and the run names into the sweep's directory and prints how to
/// submit it.
pub(super) fn write(plan: &Plan, args: &SweepArgs) -> Result<SweepExit> {
    std::fs::create_dir_all(&plan.dir)
        .with_context(|| format!("cannot create {}", plan.dir.display()))?;
    let train = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "train".into());
    let workdir = std::env::current_dir().context("cannot resolve the working directory")?;
    let text = sbatch_script(
        plan,
        &train,
        args.slurm_max_parallel,
        &workdir,
        args.threads,
    );
    let script = plan.dir.join(SCRIPT_FILE);
    std::fs::write(&script, text).with_context(|| format!("cannot write {}", script.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", script.display()))?;
    }
    let manifest = plan.dir.join(MANIFEST_FILE);
    let names: String = plan.runs.iter().map(|r| format!("{}\n", r.name)).collect();
    std::fs::write(&manifest, names)
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    println!(
        "wrote {} ({} array tasks, at most {} at once)",
        script.display(),
        plan.runs.len(),
        args.slurm_max_parallel
    );
    println!(
        "submit it with: sbatch {}",
        shell_quote(&script.to_string_lossy())
    );
    Ok(SweepExit::Code(0))
}

/// Refuses to run a task when `--slurm` recorded other run names than the plan now expands to
/// (task ids would name other runs); a sweep never run with `--slurm` has no record.
pub(super) fn check_manifest(plan: &Plan) -> Result<()> {
    let path = plan.dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let recorded: Vec<&str> = text.lines().collect();
    let now: Vec<&str> = plan.runs.iter().map(|r| r.name.as_str()).collect();
    if recorded == now {
        return Ok(());
    }
    let at = recorded
        .iter()
        .zip(&now)
        .position(|(a, b)| a != b)
        .unwrap_or(recorded.len().min(now.len()));
    let name = |list: &[&str]| {
        list.get(at)
            .map_or("none".to_string(), |n| format!("{n:?}"))
    };
    Err(ConfigError(format!(
        "plan {} now expands to {} runs, but {} (written with the Slurm script) lists {}; task \
         {at} was {} and is now {}. Write the script again with --slurm (and resubmit it), or \
         restore the plan",
        plan.path.display(),
        now.len(),
        path.display(),
        recorded.len(),
        name(&recorded),
        name(&now)
    ))
    .into())
}

/// `text` as one bash word: unchanged when it has only safe characters, else single-quoted.
pub(super) fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if safe {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `dir/file` for an `#SBATCH` path option: `%` in `dir` doubled (Slurm's file name patterns),
/// quoted when it holds whitespace.
fn sbatch_path(dir: &str, file: &str) -> String {
    let dir = dir.replace('%', "%%");
    let path = if file.is_empty() {
        dir
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    };
    if path.contains(char::is_whitespace) {
        format!("\"{path}\"")
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Run;
    use std::path::PathBuf;

    fn plan(runs: usize) -> Plan {
        Plan {
            name: "t3".into(),
            path: "/w/plans/t3.toml".into(),
            dir: "/w/results/t3".into(),
            out_dir_override: None,
            runs: (0..runs)
                .map(|i| Run {
                    index: i,
                    name: format!("r-seed{i}"),
                    config: "/w/c.toml".into(),
                    set: vec![format!("run.seed={i}")],
                    dir: format!("/w/results/t3/r-seed{i}").into(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_script_is_an_array_of_one_task_per_run() {
        let text = sbatch_script(&plan(21), "/opt/bin/train", 8, Path::new("/w"), None);
        for line in [
            "#!/bin/bash\n",
            "\n#SBATCH --job-name=t3\n",
            "\n#SBATCH --array=0-20%8\n",
            "\n#SBATCH --requeue\n",
            "\n#SBATCH --signal=B:TERM@120\n",
            "\n#SBATCH --output=/w/results/t3/slurm-%A_%a.out\n",
            "\n#SBATCH --chdir=/w\n",
            "\n##SBATCH --cpus-per-task=4\n",
            "\nexport RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n",
            "\nexec /opt/bin/train sweep /w/plans/t3.toml --task \"$SLURM_ARRAY_TASK_ID\"\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
        // Every directive comes before the first command (sbatch stops reading them there).
        let first_command = text.find("\nset -euo").unwrap();
        assert!(text.rfind("\n#SBATCH").unwrap() < first_command);
        let mut p = plan(3);
        p.out_dir_override = Some(PathBuf::from("/scratch/my results"));
        p.dir = "/scratch/my results/t3".into();
        let text = sbatch_script(&p, "train", 2, Path::new("/w"), Some(4));
        assert!(text.contains("#SBATCH --array=0-2%2\n"), "{text}");
        assert!(text.contains("#SBATCH --output=\"/scratch/my results/t3/slurm-%A_%a.out\""));
        assert!(text.contains(
            "exec train sweep /w/plans/t3.toml --out-dir '/scratch/my results' --threads 4 \
             --task \"$SLURM_ARRAY_TASK_ID\""
        ));
    }

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(shell_quote("/a/b-c_d.toml"), "/a/b-c_d.toml");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_task_of_a_plan_that_changed_since_the_script_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = plan(3);
        p.dir = dir.path().to_path_buf();
        assert!(check_manifest(&p).is_ok(), "no record, no check");
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            "r-seed0\nr-seed1\nr-seed2\n",
        )
        .unwrap();
        assert!(check_manifest(&p).is_ok());
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            "r-seed0\nx-seed0\nr-seed2\n",
        )
        .unwrap();
        let err = check_manifest(&p).unwrap_err().to_string();
        assert!(
            err.contains("task 1 was \"x-seed0\" and is now \"r-seed1\""),
            "{err}"
        );
    }
}
