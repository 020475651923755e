//! The run directory as a resource: one `train` process at a time (an advisory lock), and no
//! silent reuse of a directory that holds a finished run.
//!
//! The lock is `flock` on `<dir>/.lock` (std's [`File::try_lock`]); the kernel releases it when
//! the process ends, however it ends (SIGKILL included), so a stale lock never blocks a rerun.
//! The lock file holds the owner's process id, for the message a second process prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::ConfigError;

/// The files a run writes into its directory; `--overwrite` removes exactly these.
pub const RUN_FILES: [&str; 7] = [
    "config.toml",
    "steps.csv",
    "epochs.csv",
    "layers.csv",
    "status",
    crate::checkpoint::CHECKPOINT_FILE,
    crate::checkpoint::CHECKPOINT_TMP,
];

/// Name of the lock file inside the run directory.
const LOCK_FILE: &str = ".lock";

/// A run directory this process holds the lock of (released when dropped or at exit).
pub struct RunDir {
    path: PathBuf,
    _lock: File,
}

impl RunDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock of an existing run directory to continue its run (`train --resume`);
    /// refuses one another process holds.
    pub fn lock(path: &Path) -> Result<Self> {
        let lock = take_lock(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// Creates `path` if needed and takes its lock; refuses a directory another process holds,
    /// and one that holds an earlier run unless `overwrite`, in which case the earlier run's
    /// files ([`RUN_FILES`]) are removed (files of other names are left alone).
    pub fn acquire(path: &Path, overwrite: bool) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create run directory {}", path.display()))?;
        let lock = take_lock(path)?;
        check_reuse(path, overwrite)?;
        if overwrite {
            for name in RUN_FILES {
                let file = path.join(name);
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot remove {}", file.display()));
                    }
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

/// Opens and locks `<path>/.lock` and writes this process's id into it; refuses a lock another
/// process holds.
fn take_lock(path: &Path) -> Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(busy(path, &mut lock).into()),
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
        }
    }
    lock.set_len(0)
        .and_then(|()| writeln!(lock, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", lock_path.display()))?;
    Ok(lock)
}

/// Checks, without creating or locking anything, that `path` may become this run's directory:
/// not held by another process, and not holding an earlier run unless `overwrite`. The trainer
/// calls it before loading data, so a refusal comes at once; [`RunDir::acquire`] checks again.
pub fn precheck(path: &Path, overwrite: bool) -> Result<()> {
    if let Ok(mut lock) = File::open(path.join(LOCK_FILE))
        && let Err(TryLockError::WouldBlock) = lock.try_lock()
    {
        return Err(busy(path, &mut lock).into());
    }
    check_reuse(path, overwrite)
}

/// Refuses a directory with an earlier run's `status` or `steps.csv` unless `overwrite`.
fn check_reuse(path: &Path, overwrite: bool) -> Result<()> {
    if overwrite {
        return Ok(());
    }
    let status = path.join("status");
    let earlier = if let Ok(text) = std::fs::read_to_string(&status) {
        format!("an earlier run ({})", text.trim())
    } else if path.join("steps.csv").exists() {
        "an earlier run that ended without a status (killed?)".to_string()
    } else {
        return Ok(());
    };
    Err(ConfigError(format!(
        "run directory {} already holds {earlier}; pass --overwrite to replace it, or choose \
         another directory with --out",
        path.display()
    ))
    .into())
}

fn busy(path: &Path, lock: &mut File) -> ConfigError {
    let mut pid = String::new();
    let _ = lock.read_to_string(&mut pid);
    let owner = match pid.trim() {
        "" => "another train process".to_string(),
        pid => format!("another train process (pid {pid})"),
    };
    ConfigError(format!(
        "run directory {} is in use by {owner}; wait for it to end or choose another directory \
         with --out",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = RunDir::acquire(&run, false).unwrap();
        let err = RunDir::acquire(&run, false).err().unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("in use by another train process (pid"),
            "{text}"
        );
        assert!(precheck(&run, true).is_err());
        drop(first);
        assert!(RunDir::acquire(&run, false).is_ok());
    }

    #[test]
    fn an_earlier_run_is_refused_unless_overwrite_which_removes_its_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        for name in ["status", "layers.csv", "notes.txt"] {
            std::fs::write(run.join(name), "completed\n").unwrap();
        }
        let err = precheck(&run, false).unwrap_err();
        assert!(format!("{err}").contains("--overwrite"), "{err}");
        assert!(RunDir::acquire(&run, false).is_err());
        assert!(run.join("status").exists(), "a refusal removes nothing");
        let held = RunDir::acquire(&run, true).unwrap();
        assert!(!run.join("status").exists() && !run.join("layers.csv").exists());
        assert!(run.join("notes.txt").exists(), "files of other names stay");
        drop(held);
        // A run killed before its status was written still counts as a run.
        std::fs::write(run.join("steps.csv"), "step\n1\n").unwrap();
        assert!(precheck(&run, false).is_err());
    }
}
