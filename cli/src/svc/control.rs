//! `rdd svc create|start|stop|delete|status|logs|config` and the implicit start other commands
//! rely on (cli.md §3).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::supervise::{DISCOVERY_NAME, DISCOVERY_NAMESPACE, READY_ANNOTATION};
use crate::exit::{parse_duration, timed_out};
use rdd_process::instance::Instance;

#[derive(Args, Debug, Clone, Default)]
pub struct ServeFlags {
    /// Controllers to run (`*`, names or groups, `-x` excludes).
    #[arg(long)]
    pub controllers: Option<String>,
    /// Port of the API server.
    #[arg(long = "secure-port")]
    pub secure_port: Option<u16>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub flags: ServeFlags,
    /// Wait until the control plane and its controllers are ready.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Deadline for --wait (Go duration; 0 = none).
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Wait until the process is gone.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Deadline for --wait (Go duration; 0 = none); then the process is killed and rdd exits 4.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Show rdd.stdout.log instead of rdd.stderr.log.
    #[arg(short = 'o', long = "stdout")]
    pub stdout: bool,
    /// Keep printing as the log grows.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub fn exists(inst: &Instance) -> bool {
    inst.dir().join("args.json").exists()
}

/// A live `rdd svc serve` process: exists, is not a zombie (a killed supervisor that nobody
/// reaped still answers signal 0) and runs `serve` (the pid was not reused by another program).
fn is_serve(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    if matches!(state, Some('Z') | Some('X') | None) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|b| *b == 0).any(|a| a == b"serve")
}

/// The pid of the running `serve`.
pub fn running_pid(inst: &Instance) -> Option<i32> {
    let pid_file = inst.dir().join("rdd.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // A stale file is left alone: a reader that removed it could remove the file a new serve
    // wrote between the read and the removal; the next serve overwrites it anyway.
    (pid > 0 && is_serve(pid)).then_some(pid)
}

pub fn create(inst: &Instance, flags: &ServeFlags) -> anyhow::Result<bool> {
    if exists(inst) {
        return Ok(false);
    }
    let dir = inst.dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| dir.display().to_string())?;
    if let Some(c) = &flags.controllers {
        super::selection::enabled(c).map_err(anyhow::Error::msg)?;
    }
    let mut args = vec![
        "--secure-port".to_string(),
        inst.secure_port().to_string(),
        "--controllers".into(),
        flags.controllers.clone().unwrap_or_else(|| "*".into()),
    ];
    if let Some(p) = flags.secure_port {
        args.extend(["--secure-port".into(), p.to_string()]);
    }
    args.extend(["-v".into(), "0".into()]);
    let path = dir.join("args.json");
    std::fs::write(&path, serde_json::to_string(&args)?)
        .with_context(|| path.display().to_string())?;
    Ok(true)
}

pub async fn start(inst: &Instance, a: &StartArgs) -> anyhow::Result<i32> {
    if let Some(c) = &a.flags.controllers {
        super::selection::enabled(c).map_err(anyhow::Error::msg)?;
    }
    create(inst, &ServeFlags::default())?;
    let mut spawned = None;
    if running_pid(inst).is_some() {
        tracing::info!("{:?} control plane is already running", inst.name());
    } else {
        spawned = Some(spawn_serve(inst, &a.flags)?);
    }
    if a.wait {
        wait_ready(inst, spawned.as_mut(), a.timeout).await?;
        tracing::info!("{:?} control plane is ready", inst.name());
    }
    Ok(0)
}

fn spawn_serve(inst: &Instance, flags: &ServeFlags) -> anyhow::Result<std::process::Child> {
    let saved: Vec<String> = std::fs::read(inst.dir().join("args.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut args = vec!["svc".to_string(), "serve".to_string()];
    args.extend(saved);
    if let Some(c) = &flags.controllers {
        args.extend(["--controllers".into(), c.clone()]);
    }
    if let Some(p) = flags.secure_port {
        args.extend(["--secure-port".into(), p.to_string()]);
    }
    let logs = inst.log_dir();
    let keep_all = std::env::var_os("RDD_KEEP_LOGS").is_some();
    let title = std::env::var("RDD_LOG_TITLE")
        .ok()
        .filter(|t| !t.is_empty());
    let open =
        |stem: &str| super::logfiles::rotate_and_open(&logs, stem, keep_all, title.as_deref());
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(open("rdd.stdout")?))
        .stderr(Stdio::from(open("rdd.stderr")?));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().context("starting `rdd svc serve`")?;
    tracing::info!(pid = child.id(), "started {:?} control plane", inst.name());
    Ok(child)
}

fn pid_time(inst: &Instance) -> Option<SystemTime> {
    std::fs::metadata(inst.dir().join("rdd.pid"))
        .and_then(|m| m.modified())
        .ok()
}

/// A client with the instance's admin kubeconfig.
pub async fn client(inst: &Instance) -> anyhow::Result<kube::Client> {
    Ok(rdd_kit::client(Some(&inst.dir().join("config.yaml"))).await?)
}

/// Ready (cli.md §3.3): the kubeconfig works and the discovery ConfigMap of this start says
/// `ready: "true"`.
///
/// `spawned` is the `serve` this command started, if it started one: whether it died is asked of
/// the process itself. The pid file cannot tell: a serve slow to start (a loaded machine, a
/// binary not yet in the page cache) has not written it yet, and reading it then made a live
/// control plane look dead.
pub async fn wait_ready(
    inst: &Instance,
    mut spawned: Option<&mut std::process::Child>,
    timeout: Duration,
) -> anyhow::Result<()> {
    // Developer builds are rebuilt while a server runs; a release user upgrading rdd is not.
    // Checked once: the server answering the polls that follow is the same process.
    let mut check_version = !crate::argv::developer_mode();
    let start = Instant::now();
    let mut said = 0;
    loop {
        if timeout != Duration::ZERO && start.elapsed() > timeout {
            return Err(timed_out(format!(
                "timed out waiting for {:?} control plane to be ready",
                inst.name()
            )));
        }
        let stage = probe_ready(inst, &mut check_version).await;
        match stage {
            Ok(()) => return Ok(()),
            Err(Waiting::Fatal(e)) => return Err(e),
            Err(Waiting::Stage(n)) if n > said => {
                said = n;
                tracing::info!(
                    "{}",
                    [
                        "",
                        "waiting for API server",
                        "waiting for controllers to register"
                    ][n.min(2)]
                );
            }
            Err(_) => {}
        }
        if let Some(exit) = died(inst, spawned.as_deref_mut(), start.elapsed()) {
            anyhow::bail!(
                "{:?} control plane is not running{exit}; see `rdd svc logs`{}",
                inst.name(),
                last_log_line(inst)
                    .map(|l| format!(" (last line: {l})"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Why waiting is pointless, if it is: the serve this command started has exited and no other
/// serve holds the instance (a concurrent `rdd svc start` may have won the lock, and its serve is
/// the one to wait for); with no child of ours, the pid file names no live serve after a grace
/// period.
fn died(
    inst: &Instance,
    spawned: Option<&mut std::process::Child>,
    elapsed: Duration,
) -> Option<String> {
    match spawned {
        Some(child) => match child.try_wait() {
            Ok(Some(status)) if running_pid(inst).is_none() => Some(format!(" ({status})")),
            _ => None,
        },
        None if elapsed > Duration::from_secs(5) && running_pid(inst).is_none() => {
            Some(String::new())
        }
        None => None,
    }
}

/// The last non-empty line of the service's stderr log: why a control plane that died at
/// start-up died, in the error the user sees first.
fn last_log_line(inst: &Instance) -> Option<String> {
    let log = std::fs::read_to_string(inst.log_dir().join("rdd.stderr.log")).ok()?;
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// Why the control plane is not ready yet: a progress stage (1 API server, 2 controllers), or a
/// condition waiting cannot fix.
enum Waiting {
    Stage(usize),
    Fatal(anyhow::Error),
}

/// The server must be the same rdd as this client (cli.md §3.3): its `gitVersion` is
/// `<kubernetes version>-rdd.<rdd version>`.
fn check_server_version(git_version: &str) -> anyhow::Result<()> {
    let client = env!("CARGO_PKG_VERSION");
    match git_version.rsplit_once("-rdd.") {
        Some((_, server)) if server == client => Ok(()),
        _ => anyhow::bail!(
            "Unsupported server version {git_version:?}: this rdd is {client}; restart the control plane with `rdd svc stop && rdd svc start`"
        ),
    }
}

/// `check_version` is cleared once the server's version has been accepted.
async fn probe_ready(inst: &Instance, check_version: &mut bool) -> Result<(), Waiting> {
    let Ok(c) = client(inst).await else {
        return Err(Waiting::Stage(1));
    };
    if *check_version {
        let Ok(v) = c.apiserver_version().await else {
            return Err(Waiting::Stage(1));
        };
        check_server_version(&v.git_version).map_err(Waiting::Fatal)?;
        *check_version = false;
    }
    let cms: Api<ConfigMap> = Api::namespaced(c, DISCOVERY_NAMESPACE);
    let Ok(cm) = cms.get(DISCOVERY_NAME).await else {
        return Err(Waiting::Stage(2));
    };
    let fresh = match (cm.metadata.creation_timestamp, pid_time(inst)) {
        (Some(t), Some(p)) => {
            let p: chrono::DateTime<chrono::Utc> = p.into();
            t.0.as_second() >= p.timestamp()
        }
        _ => false,
    };
    let ready = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(READY_ANNOTATION))
        .is_some_and(|v| v == "true");
    if fresh && ready {
        Ok(())
    } else {
        Err(Waiting::Stage(2))
    }
}

/// This control plane's start: the creation time of its discovery ConfigMap (`--since=startup`).
pub async fn startup_time(client: &kube::Client) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), DISCOVERY_NAMESPACE);
    let cm = cms.get(DISCOVERY_NAME).await?;
    let t = cm
        .metadata
        .creation_timestamp
        .context("the discovery ConfigMap has no creationTimestamp")?;
    chrono::DateTime::from_timestamp(t.0.as_second(), 0)
        .context("the discovery ConfigMap's creationTimestamp is out of range")
}

/// Create and start when needed, then wait for readiness (at most 90 s, cli.md §3.8).
pub async fn ensure_running(inst: &Instance) -> anyhow::Result<()> {
    create(inst, &ServeFlags::default())?;
    let mut spawned = None;
    if running_pid(inst).is_none() {
        spawned = Some(spawn_serve(inst, &ServeFlags::default())?);
    }
    wait_ready(inst, spawned.as_mut(), Duration::from_secs(90)).await
}

pub async fn stop(inst: &Instance, a: &StopArgs) -> anyhow::Result<i32> {
    if !exists(inst) {
        tracing::info!("{:?} control plane does not exist", inst.name());
        return Ok(0);
    }
    let Some(pid) = running_pid(inst) else {
        tracing::info!("{:?} control plane is already stopped", inst.name());
        return Ok(0);
    };
    // SAFETY: signalling the pid from our own pid file, verified alive just above.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    if !a.wait {
        return Ok(0);
    }
    let start = Instant::now();
    while is_serve(pid) {
        if a.timeout != Duration::ZERO && start.elapsed() > a.timeout {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            return Err(timed_out(format!(
                "timed out waiting for {:?} control plane with pid {pid} to stop",
                inst.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(0)
}

pub async fn delete(inst: &Instance, timeout: Duration) -> anyhow::Result<i32> {
    if !exists(inst) {
        tracing::info!("{:?} control plane does not exist", inst.name());
        return Ok(0);
    }
    stop(
        inst,
        &StopArgs {
            wait: true,
            timeout,
        },
    )
    .await?;
    if running_pid(inst).is_some() {
        anyhow::bail!("{:?} control plane is still running", inst.name());
    }
    if std::env::var_os("RDD_KEEP_LOGS").is_none() {
        remove(&inst.log_dir())?;
    }
    remove(&inst.short_dir())?;
    remove(&inst.dir())?;
    Ok(0)
}

fn remove(p: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| p.display().to_string()),
    }
}

pub fn status(inst: &Instance, developer: bool) -> anyhow::Result<i32> {
    let name = inst.name();
    let pid = running_pid(inst);
    println!("{name:?} control plane has been created: {}", exists(inst));
    println!("{name:?} control plane has been started: {}", pid.is_some());
    println!("{name:?} control plane PID is: {}", pid.unwrap_or(0));
    if developer {
        println!("developer mode is enabled");
    }
    if pid.is_some() {
        let children = super::supervise::read_status(inst);
        if !children.is_empty() {
            println!(
                "{:<22} {:<9} {:>7} {:>8} {:<6} LAST EXIT",
                "PROCESS", "STATE", "PID", "RESTARTS", "READY"
            );
            for c in children {
                println!(
                    "{:<22} {:<9} {:>7} {:>8} {:<6} {}",
                    c.name,
                    c.state,
                    c.pid,
                    c.restarts,
                    c.ready,
                    c.last_exit.or(c.error).unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    Ok(0)
}

pub async fn logs(inst: &Instance, a: &LogsArgs) -> anyhow::Result<i32> {
    let path = inst.log_dir().join(if a.stdout {
        "rdd.stdout.log"
    } else {
        "rdd.stderr.log"
    });
    tail(&path, a.follow).await?;
    Ok(0)
}

/// Print a file, and with `follow` keep printing what is appended (from the start again when
/// it is truncated or replaced by a rotation).
pub async fn tail(path: &Path, follow: bool) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut out = std::io::stdout();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    out.write_all(&buf)?;
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut pos = f.stream_position()?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let len = meta.len();
        if len < pos {
            f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
            pos = 0;
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos))?;
            buf.clear();
            f.read_to_end(&mut buf)?;
            out.write_all(&buf)?;
            out.flush()?;
            pos += buf.len() as u64;
        }
    }
}

pub async fn config(inst: &Instance) -> anyhow::Result<i32> {
    ensure_running(inst).await?;
    let path = inst.dir().join("config.yaml");
    print!(
        "{}",
        std::fs::read_to_string(&path).with_context(|| path.display().to_string())?
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::check_server_version;

    #[test]
    fn server_version_must_be_this_rdd() {
        let mine = format!("v1.35.0-rdd.{}", env!("CARGO_PKG_VERSION"));
        check_server_version(&mine).unwrap();
        let other = check_server_version("v1.35.0-rdd.0.0.0-older").unwrap_err();
        assert!(
            other
                .to_string()
                .starts_with("Unsupported server version \"v1.35.0-rdd.0.0.0-older\""),
            "{other}"
        );
        // A plain Kubernetes server (the kubeconfig points elsewhere) is not rdd at all.
        assert!(check_server_version("v1.35.0").is_err());
        assert!(
            check_server_version(&format!("v1.35.0-k3s.{}", env!("CARGO_PKG_VERSION"))).is_err()
        );
    }
}
