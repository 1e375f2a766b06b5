//! One process of a kind per instance: an exclusive `flock` on a file in the instance directory,
//! held for the process's lifetime and released by the kernel however the process ends (so a
//! crashed process never leaves a stale lock behind, unlike a pid file).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::ProcessError;

pub struct InstanceLock {
    _file: File,
}

/// Take the lock at `path` or fail with a one-line error naming `what` and the path.
pub fn acquire(path: &Path, what: &str) -> Result<InstanceLock, ProcessError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(ProcessError::Locked(format!(
            "another {what} is already running for this instance (lock {} is held)",
            path.display()
        )));
    }
    Ok(InstanceLock { _file: file })
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = super::acquire(&path, "thing").unwrap();
        let err = super::acquire(&path, "thing").err().unwrap().to_string();
        assert!(err.contains("another thing is already running"), "{err}");
        drop(first);
        super::acquire(&path, "thing").unwrap();
    }
}
