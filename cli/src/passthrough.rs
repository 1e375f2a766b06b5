//! `rdd kubectl`, `rdd yq` and `rdd ctl`: rdd embeds neither program, it runs the one on PATH.
//! When rdd itself is installed under one of those names (the multi-call form, cli.md §1.1),
//! that PATH entry is rdd and is skipped, so the call cannot loop back into rdd.

use std::path::{Path, PathBuf};

use crate::exit::ExitError;

/// The first `name` on PATH that is not this executable.
pub fn find(name: &str) -> Option<PathBuf> {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .filter(|p| is_executable(p))
        .find(|p| me.is_none() || p.canonicalize().ok() != me)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `name ARGS…` from PATH with `env` added; its exit status is ours.
pub fn run(name: &str, args: &[String], env: &[(&str, &Path)]) -> anyhow::Result<i32> {
    let Some(program) = find(name) else {
        return Err(ExitError {
            code: 1,
            message: format!("{name} was not found on PATH; install {name} to use `rdd {name}`"),
        }
        .into());
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status()?;
    Ok(status.code().unwrap_or(1))
}
