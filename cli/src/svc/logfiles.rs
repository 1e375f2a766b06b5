//! The service's log files and their rotation on every start (cli.md §2.2).
//!
//! `<log_dir>/rdd.stdout.log` and `rdd.stderr.log` are renamed to `<name>.<N>.log`, N one higher
//! than the highest existing backup, so the numbers only grow and `ls` order is not needed to find
//! the newest. Only the newest [`KEEP`] backups stay unless `RDD_KEEP_LOGS` is set. A new file
//! starts with `=== <title> ===` when `RDD_LOG_TITLE` is set, so a test suite can tell which test
//! a log belongs to.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Backups kept per log file.
pub const KEEP: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogFileError + '_ {
    move |source| LogFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Rotate `<dir>/<stem>.log` away (if present) and open a fresh one for appending.
pub fn rotate_and_open(
    dir: &Path,
    stem: &str,
    keep_all: bool,
    title: Option<&str>,
) -> Result<File, LogFileError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let active = dir.join(format!("{stem}.log"));
    let mut backups = backups(dir, stem)?;
    if active.exists() {
        let next = backups.last().map_or(1, |(n, _)| n + 1);
        let to = dir.join(format!("{stem}.{next}.log"));
        std::fs::rename(&active, &to).map_err(io(&active))?;
        backups.push((next, to));
    }
    if !keep_all && backups.len() > KEEP {
        for (_, old) in &backups[..backups.len() - KEEP] {
            match std::fs::remove_file(old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(old)(e)),
            }
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&active)
        .map_err(io(&active))?;
    if let Some(t) = title {
        writeln!(f, "=== {t} ===").map_err(io(&active))?;
    }
    Ok(f)
}

/// The numbered backups `<stem>.<N>.log` in `dir`, oldest first.
fn backups(dir: &Path, stem: &str) -> Result<Vec<(u64, PathBuf)>, LogFileError> {
    let prefix = format!("{stem}.");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let n = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn first_start_creates_the_file_with_its_title() {
        let d = tempfile::tempdir().unwrap();
        drop(rotate_and_open(d.path(), "rdd.stderr", false, Some("my test")).unwrap());
        assert_eq!(names(d.path()), ["rdd.stderr.log"]);
        let text = std::fs::read_to_string(d.path().join("rdd.stderr.log")).unwrap();
        assert_eq!(text, "=== my test ===\n");
    }

    #[test]
    fn each_start_moves_the_active_file_to_the_next_number_and_keeps_five() {
        let d = tempfile::tempdir().unwrap();
        // A gap and a stray file: numbering continues after the highest, strays are left alone.
        std::fs::write(d.path().join("rdd.stderr.3.log"), "three").unwrap();
        std::fs::write(d.path().join("rdd.stderr.x.log"), "stray").unwrap();
        std::fs::write(d.path().join("rdd.stdout.9.log"), "other stem").unwrap();
        for i in 0..7 {
            let mut f = rotate_and_open(d.path(), "rdd.stderr", false, None).unwrap();
            write!(f, "run {i}").unwrap();
        }
        assert_eq!(
            names(d.path()),
            [
                "rdd.stderr.5.log",
                "rdd.stderr.6.log",
                "rdd.stderr.7.log",
                "rdd.stderr.8.log",
                "rdd.stderr.9.log",
                "rdd.stderr.log",
                "rdd.stderr.x.log",
                "rdd.stdout.9.log",
            ]
        );
        let read = |n: &str| std::fs::read_to_string(d.path().join(n)).unwrap();
        assert_eq!(read("rdd.stderr.log"), "run 6");
        // The first call had no active file to move; runs 0..5 became backups 4..9.
        assert_eq!(read("rdd.stderr.9.log"), "run 5");
        assert_eq!(read("rdd.stderr.5.log"), "run 1");
    }

    #[test]
    fn keep_all_deletes_nothing() {
        let d = tempfile::tempdir().unwrap();
        for _ in 0..8 {
            drop(rotate_and_open(d.path(), "rdd.stdout", true, None).unwrap());
        }
        assert_eq!(names(d.path()).len(), 8);
    }
}
