//! Every Lima interaction as one `limactl` operation (lima.md §12.1). The program is a path from
//! configuration; tests point it at `limactl-standin`. Every invocation sees `LIMA_HOME` and
//! `--tty=false`, and rdd never relies on `limactl`'s human-readable stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

#[derive(Clone, Debug)]
pub struct Limactl {
    pub program: PathBuf,
    pub lima_home: PathBuf,
}

/// The fields of `limactl list --json` rdd relies on (lima.md §6).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspect {
    #[serde(default)]
    pub status: String,
    #[serde(default, rename = "hostAgentPID")]
    pub host_agent_pid: i32,
    #[serde(default, rename = "driverPID")]
    pub driver_pid: i32,
    #[serde(default)]
    pub errors: Option<Vec<String>>,
}

impl Limactl {
    pub fn dir(&self, name: &str) -> PathBuf {
        self.lima_home.join(name)
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.arg("--tty=false")
            .args(args)
            .env("LIMA_HOME", &self.lima_home)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Run to completion within `cap`; Ok(stdout) on exit 0, Err(stderr) otherwise.
    async fn run(&self, args: &[&str], cap: Duration) -> Result<String, Error> {
        let out = tokio::time::timeout(cap, self.command(args).output())
            .await
            .map_err(|_| Error::Limactl(format!("limactl {} timed out", args.join(" "))))?
            .map_err(|e| {
                Error::Limactl(format!(
                    "running {} {}: {e}",
                    self.program.display(),
                    args.join(" ")
                ))
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(Error::Limactl(if err.is_empty() {
                format!("limactl {} failed: {}", args.join(" "), out.status)
            } else {
                err
            }))
        }
    }

    /// `template validate FILE`: Err carries Lima's reason.
    pub async fn validate(&self, template: &str) -> Result<(), String> {
        let file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile()
            .map_err(|e| e.to_string())?;
        std::fs::write(file.path(), template).map_err(|e| e.to_string())?;
        let path = file.path().to_string_lossy().into_owned();
        self.run(&["template", "validate", &path], Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// `create --name=N FILE`; then `lima.yaml` is verified byte-for-byte and rewritten if it
    /// differs.
    pub async fn create(&self, name: &str, template: &str) -> Result<(), Error> {
        std::fs::create_dir_all(&self.lima_home)?;
        let file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile_in(&self.lima_home)?;
        std::fs::write(file.path(), template)?;
        let path = file.path().to_string_lossy().into_owned();
        self.run(
            &["create", &format!("--name={name}"), &path],
            Duration::from_secs(120),
        )
        .await?;
        let lima_yaml = self.dir(name).join("lima.yaml");
        if std::fs::read(&lima_yaml).ok().as_deref() != Some(template.as_bytes()) {
            std::fs::write(&lima_yaml, template)?;
        }
        Ok(())
    }

    /// `list --json N`: None when the instance does not exist.
    pub async fn inspect(&self, name: &str) -> Result<Option<Inspect>, Error> {
        if !self.dir(name).join("lima.yaml").exists() {
            return Ok(None);
        }
        let out = self
            .run(&["list", "--json", name], Duration::from_secs(30))
            .await?;
        match out.lines().find(|l| !l.trim().is_empty()) {
            None => Ok(None),
            Some(line) => Ok(Some(serde_json::from_str(line).map_err(|e| {
                Error::Limactl(format!("limactl list --json {name}: {e}"))
            })?)),
        }
    }

    /// Forced stop (lima.md §7), with a fresh 30 s deadline independent of the reconcile.
    pub async fn stop_force(&self, name: &str) -> Result<(), Error> {
        if !self.dir(name).exists() {
            return Ok(());
        }
        self.run(&["stop", "--force", name], Duration::from_secs(30))
            .await
            .map(|_| ())
    }

    /// `delete --force N` with a 1-minute cap.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        if !self.dir(name).exists() {
            return Ok(());
        }
        self.run(&["delete", "--force", name], Duration::from_secs(60))
            .await
            .map(|_| ())
    }

    /// The host-agent child (`start --foreground N`) in its own process group, stdout and
    /// stderr to `ha.stdout.log` / `ha.stderr.log`. It is not killed when dropped (G-2): only
    /// the interrupt-first shutdown ends it.
    pub fn spawn_agent(&self, name: &str) -> Result<tokio::process::Child, Error> {
        let dir = self.dir(name);
        let mut out = std::fs::File::create(dir.join("ha.stdout.log"))?;
        let mut err = std::fs::File::create(dir.join("ha.stderr.log"))?;
        // lima.md §4 step 2: an optional title line, JSON so the event tail accepts it.
        if let Some(title) = std::env::var("RDD_LOG_TITLE")
            .ok()
            .filter(|t| !t.is_empty())
        {
            use std::io::Write;
            let line = format!("{}\n", serde_json::json!({ "title": title }));
            out.write_all(line.as_bytes())?;
            err.write_all(line.as_bytes())?;
        }
        let mut c = self.command(&["start", "--foreground", name]);
        c.stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        Ok(c.spawn()?)
    }
}

/// Rotate `ha.stdout.log`/`ha.stderr.log` to `<name>.<N>.log` (newest has the highest N; the
/// five newest kept) before a start (lima.md §4 step 2).
pub fn rotate_logs(dir: &Path) {
    for base in ["ha.stdout", "ha.stderr", "serial", "serialp", "serialv"] {
        let cur = dir.join(format!("{base}.log"));
        if !cur.exists() {
            continue;
        }
        let mut n: Vec<u32> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| {
                        let f = e.file_name().to_string_lossy().into_owned();
                        f.strip_prefix(&format!("{base}."))
                            .and_then(|r| r.strip_suffix(".log"))
                            .and_then(|r| r.parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default();
        n.sort_unstable();
        let next = n.last().copied().unwrap_or(0) + 1;
        let _ = std::fs::rename(&cur, dir.join(format!("{base}.{next}.log")));
        n.push(next);
        if std::env::var_os("RDD_KEEP_LOGS").is_none() && n.len() > 5 {
            for old in &n[..n.len() - 5] {
                let _ = std::fs::remove_file(dir.join(format!("{base}.{old}.log")));
            }
        }
    }
}
