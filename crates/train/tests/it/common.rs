//! Helpers shared by the end-to-end tests: running the binary, writing small CSV problems,
//! reading the run's CSVs back.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Runs `train` with `args` in `cwd` and waits for it.
pub fn train(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the train binary runs")
}

/// What the run printed on stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `epochs.csv` of `run` without its `seconds` column (the one column a resumed run may differ
/// in from an uninterrupted one).
pub fn epochs_without_seconds(run: &Path) -> String {
    let text = std::fs::read_to_string(run.join("epochs.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|c| *c == "seconds").unwrap();
    text.lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.remove(at);
            cells.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A small regression CSV, y = x·w* + noise, from a fixed linear congruential generator.
pub fn write_regression_csv(dir: &Path, rows: usize) -> PathBuf {
    let mut state: u64 = 12345;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let mut text = String::from("a,b,c,y\n");
    for _ in 0..rows {
        let x = [next(), next(), next()];
        let y = 1.5 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 0.3 + 0.1 * next();
        text += &format!("{},{},{},{}\n", x[0], x[1], x[2], y);
    }
    let path = dir.join("data.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// A CSV of the run directory: header and rows (empty cells as NaN).
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|c| {
                    if c.is_empty() {
                        f64::NAN
                    } else {
                        c.parse().unwrap()
                    }
                })
                .collect()
        })
        .collect();
    (header, rows)
}

/// A config training `optimizer` (TOML lines) full batch on a 40-row regression CSV for 30
/// epochs, in f64 on ndarray; `extra` goes into `[training]`.
pub fn regression_config(dir: &Path, optimizer: &str, extra: &str) -> PathBuf {
    let csv = write_regression_csv(dir, 40);
    let config = format!(
        r#"
[run]
backend = "ndarray"
precision = "f64"
[data]
dataset = "csv"
path = "{}"
target = "y"
task = "regression"
batch_size = 40
shuffle = false
[model]
kind = "linear"
init = "zeros"
[optimizer]
{optimizer}
[training]
epochs = 30
{extra}
"#,
        csv.display()
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Starts `train` with `args` in `cwd` (stderr discarded) and waits until the run's `steps.csv`
/// has `rows` lines.
pub fn spawn_until_rows(args: &[&str], cwd: &Path, steps_csv: &Path, rows: usize) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .current_dir(cwd)
        .stderr(Stdio::null())
        .spawn()
        .expect("the train binary starts");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(steps_csv).map_or(0, |t| t.lines().count()) < rows {
        assert!(started.elapsed().as_secs() < 120, "the run did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// Sends `signal` (`INT`, `TERM`, `KILL`, ...) to a child.
pub fn send(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}
