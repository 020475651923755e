//! `train sweep` end to end: plan errors, the local runner (parallel runs, skipping finished
//! ones, resuming interrupted ones, carrying on past failures, stopping on SIGTERM), `--task`,
//! the Slurm script, and the repository's LossGrad Table 3 plan.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::{regression_config, stderr, train};
use steplab_train::sweep::Plan;

/// Runs `train sweep` with `args` in `cwd` (without the test's fault injection).
fn sweep(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .arg("sweep")
        .args(args)
        .env_remove("STEPLAB_FAULT")
        .current_dir(cwd)
        .output()
        .expect("the train binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Two tiny regression configs, `configs/a.toml` (LossGrad) and `configs/b.toml` (SGD), each
/// 30 full-batch epochs of 40 rows.
fn two_configs(dir: &Path) -> PathBuf {
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    for (name, optimizer) in [
        ("a", "kind = \"lossgrad\"\nlr = 0.01"),
        ("b", "kind = \"sgd\"\nlr = 0.1"),
    ] {
        let path = regression_config(&configs, optimizer, "");
        std::fs::rename(path, configs.join(format!("{name}.toml"))).unwrap();
    }
    configs
}

/// Writes `plans/p.toml` (results under `out/<name>`, configs from `../configs`).
fn write_plan(dir: &Path, text: &str) -> PathBuf {
    let plans = dir.join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let path = plans.join("p.toml");
    std::fs::write(&path, format!("out_dir = \"../out\"\n{text}")).unwrap();
    path
}

fn status(run: &Path) -> String {
    read(&run.join("status")).trim().to_string()
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_local_sweep_runs_every_run_and_a_second_one_skips_them_all() {
    let dir = tempfile::tempdir().unwrap();
    two_configs(dir.path());
    let plan = write_plan(
        dir.path(),
        "name = \"s\"\nconfigs = [\"../configs/*.toml\"]\nseeds = [0, 1]\n",
    );
    let plan = plan.to_str().unwrap();
    let out = sweep(&[plan, "--jobs", "2"], dir.path());
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("4 runs, 2 at a time"), "{text}");
    assert!(
        text.contains("4 finished, 0 skipped (finished before), 0 failed"),
        "{text}"
    );
    let runs = dir.path().join("out/s");
    let names = ["a-seed0", "a-seed1", "b-seed0", "b-seed1"];
    for name in names {
        let run = runs.join(name);
        assert_eq!(status(&run), "completed", "{name}");
        assert_eq!(read(&run.join("steps.csv")).lines().count(), 31, "{name}");
        let log = read(&run.join("train.log"));
        assert!(log.contains("=== ") && log.contains("--overwrite"), "{log}");
        assert!(text.contains(&format!("start   {name} (fresh)")), "{text}");
        assert!(
            text.contains(&format!("done    {name}: completed in ")),
            "{text}"
        );
    }
    assert!(read(&runs.join("a-seed1/config.toml")).contains("seed = 1"));
    assert!(read(&runs.join("b-seed0/config.toml")).contains("kind = \"sgd\""));

    let files = ["steps.csv", "status", "train.log", "checkpoint.safetensors"];
    let before: Vec<(SystemTime, String)> = names
        .iter()
        .flat_map(|n| files.map(|f| runs.join(n).join(f)))
        .map(|p| (modified(&p), read(&p.with_file_name("steps.csv"))))
        .collect();
    let again = sweep(&[plan, "--jobs", "2"], dir.path());
    let text = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{text}");
    assert!(
        text.contains("0 finished, 4 skipped (finished before), 0 failed"),
        "{text}"
    );
    for name in names {
        assert!(text.contains(&format!("skip    {name}: finished before (completed)")));
    }
    let after: Vec<(SystemTime, String)> = names
        .iter()
        .flat_map(|n| files.map(|f| runs.join(n).join(f)))
        .map(|p| (modified(&p), read(&p.with_file_name("steps.csv"))))
        .collect();
    assert_eq!(before, after, "a skipped run is not touched");

    let list = sweep(&[plan, "--list"], dir.path());
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(text.contains("sweep s: 4 runs in "), "{text}");
    assert!(
        text.contains("   2  b-seed0  finished (completed)"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("4 finished"), "{text}");
}

#[test]
fn an_interrupted_run_resumes_and_ends_as_one_never_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let configs = two_configs(dir.path());
    let plan = write_plan(
        dir.path(),
        "name = \"s\"\nconfigs = [\"../configs/a.toml\"]",
    );
    let plan = plan.to_str().unwrap();
    let config = configs.join("a.toml");
    let config = config.to_str().unwrap();
    // The run the plan expands to, killed after update 5 (as if by SIGKILL).
    let run = dir.path().join("out/s/a-seed0");
    let args = ["--config", config, "--set", "run.seed=0", "--out"];
    let killed = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .arg(&run)
        .env("STEPLAB_FAULT", "abort_after_step=5")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert!(run.join("checkpoint.safetensors").exists());
    let list = stdout(&sweep(&[plan, "--list"], dir.path()));
    assert!(list.contains("a-seed0  interrupted ("), "{list}");

    let out = sweep(&[plan], dir.path());
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("start   a-seed0 (resuming from its checkpoint)"),
        "{text}"
    );
    let log = read(&run.join("train.log"));
    assert!(
        log.contains("--resume") && log.contains("resuming after step"),
        "{log}"
    );
    assert_eq!(status(&run), "completed");

    let fresh = dir.path().join("fresh");
    let whole = train(
        &[&args[..], &[fresh.to_str().unwrap()]].concat(),
        dir.path(),
    );
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert_eq!(
        read(&run.join("steps.csv")),
        read(&fresh.join("steps.csv")),
        "the resumed run's steps are the uninterrupted run's"
    );
}

#[test]
fn a_failing_run_is_reported_at_the_end_and_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    two_configs(dir.path());
    let plan = write_plan(
        dir.path(),
        "name = \"s\"\nconfigs = [\"../configs/a.toml\"]\n[grid]\n\"optimizer.lr\" = [-1.0, 0.01]\n",
    );
    let plan = plan.to_str().unwrap();
    let out = sweep(&[plan, "--jobs", "2"], dir.path());
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let runs = dir.path().join("out/s");
    assert_eq!(status(&runs.join("a-lr=0.01-seed0")), "completed");
    let bad = runs.join("a-lr=-1.0-seed0");
    let log = bad.join("train.log");
    assert!(
        text.contains("1 finished, 0 skipped (finished before), 1 failed"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "failed runs:\n  a-lr=-1.0-seed0 (task 0): exit 2; log: {}\n",
            log.display()
        )),
        "{text}"
    );
    assert!(read(&log).contains("optimizer.lr"), "the log says why");
    let list = stdout(&sweep(&[plan, "--list"], dir.path()));
    assert!(list.contains("a-lr=-1.0-seed0  failed ("), "{list}");
    // The next sweep tries the failed run again and skips the finished one; a task's exit
    // status is its run's.
    let again = sweep(&[plan], dir.path());
    let text = stderr(&again);
    assert_eq!(again.status.code(), Some(1), "{text}");
    assert!(
        text.contains("0 finished, 1 skipped (finished before), 1 failed"),
        "{text}"
    );
    let task = sweep(&[plan, "--task", "0"], dir.path());
    assert_eq!(task.status.code(), Some(2), "{}", stderr(&task));
    assert_eq!(
        read(&log).matches("=== ").count(),
        3,
        "each try appends to the log"
    );
}

#[test]
fn a_task_runs_exactly_its_run() {
    let dir = tempfile::tempdir().unwrap();
    two_configs(dir.path());
    let plan = write_plan(
        dir.path(),
        "name = \"s\"\nconfigs = [\"../configs/b.toml\"]\nseeds = [0, 1, 2]\n",
    );
    let plan = plan.to_str().unwrap();
    let out = sweep(&[plan, "--task", "1"], dir.path());
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("[task 1/3] start b-seed1 (fresh); log: "),
        "{text}"
    );
    let runs = dir.path().join("out/s");
    let made: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(made, ["b-seed1"]);
    assert_eq!(status(&runs.join("b-seed1")), "completed");
    assert!(read(&runs.join("b-seed1/train.log")).contains("run directory:"));
    let again = sweep(&[plan, "--task", "1"], dir.path());
    assert_eq!(again.status.code(), Some(0));
    assert!(stderr(&again).contains("skip b-seed1: finished before (completed)"));
    let out = sweep(&[plan, "--task", "3"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--task 3: the plan"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("has 3 runs, tasks 0 to 2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_slurm_script_is_an_array_job_whose_tasks_run_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    two_configs(dir.path());
    let plan = write_plan(
        dir.path(),
        "name = \"s\"\nconfigs = [\"../configs/*.toml\"]\nseeds = [0, 1]\n",
    );
    let plan_text = plan.to_str().unwrap();
    let out = sweep(
        &[plan_text, "--slurm", "--slurm-max-parallel", "3"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sweep_dir = std::fs::canonicalize(dir.path()).unwrap().join("out/s");
    let script = sweep_dir.join("sweep.sbatch");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("wrote {}", script.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("sbatch {}", script.display())),
        "{text}"
    );
    assert!(!sweep_dir.join("a-seed0").exists(), "--slurm runs nothing");

    let body = read(&script);
    let plan_abs = std::fs::canonicalize(&plan).unwrap();
    let train_abs = std::fs::canonicalize(env!("CARGO_BIN_EXE_train")).unwrap();
    for line in [
        "#SBATCH --job-name=s".to_string(),
        "#SBATCH --array=0-3%3".into(),
        "#SBATCH --requeue".into(),
        "#SBATCH --signal=B:TERM@120".into(),
        format!("#SBATCH --output={}/slurm-%A_%a.out", sweep_dir.display()),
        "##SBATCH --cpus-per-task=".into(),
        "export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}".into(),
        format!(
            "exec {} sweep {} --task \"$SLURM_ARRAY_TASK_ID\"",
            train_abs.display(),
            plan_abs.display()
        ),
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(&line)),
            "{line:?} in:\n{body}"
        );
    }
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n {}", script.display());
    assert_eq!(
        read(&sweep_dir.join("sweep.runs")),
        "a-seed0\na-seed1\nb-seed0\nb-seed1\n"
    );

    // An array task, as Slurm would start it (the #SBATCH lines are comments to bash).
    let task = Command::new("bash")
        .arg(&script)
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env_remove("STEPLAB_FAULT")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(task.status.code(), Some(0), "{}", stderr(&task));
    assert_eq!(status(&sweep_dir.join("b-seed0")), "completed");
    assert!(!sweep_dir.join("a-seed0").exists());

    // A plan that now expands to other runs than the script's is refused for tasks.
    std::fs::write(
        &plan,
        read(&plan).replace("seeds = [0, 1]", "seeds = [0, 1, 2]"),
    )
    .unwrap();
    let out = sweep(&[plan_text, "--task", "0"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Write the script again with --slurm"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_errors_name_the_file_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    two_configs(dir.path());
    let cases = [
        (
            "name = \"s\"\nconfigs = [\"../configs/a.toml\"]\nseed = [1]",
            "unknown field `seed`",
        ),
        (
            "name = \"s\"\nconfigs = [\"../configs/a.toml\"]\nseeds = [\"x\"]",
            "key `seeds[0]`",
        ),
        (
            "name = \"s\"\nconfigs = [\"../configs/nope.toml\"]",
            "\"../configs/nope.toml\": no such file",
        ),
        (
            "name = \"s\"\nconfigs = [\"../configs/z*.toml\"]",
            "\"../configs/z*.toml\" matches no file",
        ),
        (
            "name = \"s\"\nconfigs = [\"../configs/a.toml\"]\nset = [\"run.seed=2\"]",
            "key `set[0]`",
        ),
        (
            "name = \"s\"\nconfigs = [\"../configs/a.toml\"]\n[grid]\n\"optimizer.lr\" = 0.1",
            "key `grid.\"optimizer.lr\"`: must be a non-empty list",
        ),
    ];
    for (text, expected) in cases {
        let plan = write_plan(dir.path(), text);
        let out = sweep(&[plan.to_str().unwrap(), "--list"], dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(&format!("plan {}", plan.display())), "{err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
    let out = sweep(&["plans/none.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read plan plans/none.toml"),
        "{}",
        stderr(&out)
    );
    let out = sweep(&["plans/p.toml", "--task", "0", "--slurm"], dir.path());
    assert_eq!(out.status.code(), Some(2), "conflicting modes");
}

#[test]
fn sigterm_stops_the_sweep_after_its_run_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    two_configs(dir.path());
    let plan = write_plan(
        dir.path(),
        "name = \"s\"\nconfigs = [\"../configs/a.toml\"]\nseeds = [0, 1]\n\
         set = [\"training.epochs=100000\"]\n",
    );
    let child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["sweep", plan.to_str().unwrap()])
        .env_remove("STEPLAB_FAULT")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = dir.path().join("out/s/a-seed0");
    let started = Instant::now();
    while std::fs::read_to_string(run.join("steps.csv")).map_or(0, |t| t.lines().count()) < 5 {
        assert!(started.elapsed().as_secs() < 120, "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::common::send(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(143), "{text}");
    assert!(
        text.contains("stopping: SIGTERM sent to 1 running run(s)"),
        "{text}"
    );
    assert!(
        text.contains("1 interrupted (checkpointed), 1 not started"),
        "{text}"
    );
    assert!(
        status(&run).starts_with("interrupted after step"),
        "{}",
        status(&run)
    );
    assert!(run.join("checkpoint.safetensors").exists());
    assert!(
        !dir.path().join("out/s/a-seed1").exists(),
        "no run starts after the signal"
    );
    let list = stdout(&sweep(&[plan.to_str().unwrap(), "--list"], dir.path()));
    assert!(
        list.contains("a-seed0  interrupted (interrupted after step"),
        "{list}"
    );
    assert!(list.contains("a-seed1  pending"), "{list}");
}

#[test]
fn the_lossgrad_table3_plan_is_7_configs_times_3_seeds() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let plan = Plan::load(&repo.join("plans/lossgrad_table3.toml"), None).unwrap();
    assert_eq!(plan.name, "lossgrad_table3");
    assert_eq!(plan.runs.len(), 21);
    let repo = std::fs::canonicalize(repo).unwrap();
    assert_eq!(plan.dir, repo.join("results/lossgrad_table3"));
    let mut expected: Vec<PathBuf> = std::fs::read_dir(repo.join("configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("lossgrad_t3_") && name.ends_with(".toml")
        })
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 7);
    for (i, run) in plan.runs.iter().enumerate() {
        assert_eq!(run.config, expected[i / 3]);
        assert!(run.config.is_file());
        let stem = run.config.file_stem().unwrap().to_str().unwrap();
        assert_eq!(run.name, format!("{stem}-seed{}", i % 3));
        assert_eq!(run.set, [format!("run.seed={}", i % 3)]);
        assert_eq!(run.dir, plan.dir.join(&run.name));
    }
    assert_eq!(
        plan.runs[0].name,
        "lossgrad_t3_fmnist_autoencoder_lossgrad-seed0"
    );
    assert_eq!(
        plan.runs[20].name,
        "lossgrad_t3_fmnist_autoencoder_wngrad-seed2"
    );
}

#[test]
fn every_plan_of_the_repository_expands_to_configs_that_load() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let expected_runs = [
        ("lossgrad_table3.toml", 21),
        ("reproduce_lossgrad_table3.toml", 21),
        ("reproduce_lossgrad_fig3.toml", 12),
        ("reproduce_l4_badreg.toml", 50),
        ("reproduce_gr_boston.toml", 3),
        ("reproduce_gr_logistic_fmnist.toml", 5),
        ("reproduce_tlr_robustness_fmnist.toml", 12),
        ("reproduce_cifar_short.toml", 6),
        ("reproduce_imdb_short.toml", 6),
    ];
    let mut plans: Vec<String> = std::fs::read_dir(repo.join("plans"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    plans.sort();
    let mut listed: Vec<String> = expected_runs.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(plans, listed, "a plan without an expected run count here");
    for (name, count) in expected_runs {
        let plan = Plan::load(&repo.join("plans").join(name), None).unwrap();
        assert_eq!(plan.runs.len(), count, "{name}");
        for run in &plan.runs {
            let config = steplab_train::config::load(&run.config, &[], &run.set)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", run.name));
            assert!(config.training.epochs >= 1, "{name}: {}", run.name);
        }
    }
}
