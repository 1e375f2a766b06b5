//! Supervision of the gateway and controller processes by `rdd svc serve`.
//!
//! Each enabled process (see [`super::selection`]) runs as a child in its own process group,
//! with its own API identity (a token kubeconfig for its ServiceAccount, least privilege from
//! `deploy/rbac`), its own log file and admin port. A child that exits is restarted with capped
//! exponential backoff; its state, pid, restart count and last exit are written to
//! `<instance dir>/children.json` for `rdd svc status`. Children get SIGKILL when the
//! supervisor dies (Linux `PR_SET_PDEATHSIG`), and a new supervisor kills leftovers recorded by
//! an old one, so `kill -9` of the supervisor leaves no duplicates behind. SIGKILL, not SIGTERM:
//! a crashed supervisor is a crashed control plane, and a controller must not run its graceful
//! shutdown then — the limavm-controller would stop every host agent, which must outlive a
//! control-plane crash and be recovered by the next start (cli.md §9.11).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::selection::Proc;
use rdd_process::instance::Instance;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChildStatus {
    pub name: String,
    /// `starting`, `running`, `backoff`, `missing`, `stopping`, `stopped`.
    pub state: String,
    pub pid: u32,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub admin_addr: Option<String>,
    pub ready: bool,
    pub log: String,
    pub binary: String,
    pub error: Option<String>,
}

pub type Table = Arc<Mutex<BTreeMap<String, ChildStatus>>>;

pub fn status_file(inst: &Instance) -> PathBuf {
    inst.dir().join("children.json")
}

async fn save(inst: &Instance, table: &Table) {
    let t = table.lock().await;
    let list: Vec<&ChildStatus> = t.values().collect();
    if let Ok(text) = serde_json::to_string_pretty(&list) {
        let tmp = status_file(inst).with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, status_file(inst));
        }
    }
}

pub fn read_status(inst: &Instance) -> Vec<ChildStatus> {
    std::fs::read(status_file(inst))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Kill processes a previous supervisor recorded, if they are still the same programs.
pub fn kill_leftovers(inst: &Instance) {
    for c in read_status(inst) {
        if c.pid == 0 {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", c.pid)).unwrap_or_default();
        let exe = String::from_utf8_lossy(&cmdline);
        if exe.split('\0').next().is_some_and(|a| a.ends_with(&c.name)) {
            tracing::warn!(name = %c.name, pid = c.pid, "killing a child left by a previous supervisor");
            // SAFETY: plain kill(2) on a pid we verified runs the expected program.
            unsafe {
                libc::kill(c.pid as i32, libc::SIGKILL);
            }
        }
    }
}

fn binary(name: &str) -> PathBuf {
    // Binaries live next to `rdd` (cargo's target dir or an install prefix).
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join(name)
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .ok()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown".into(),
    }
}

pub struct Supervisor {
    pub inst: Instance,
    pub table: Table,
    pub log_level: String,
    pub stop: CancellationToken,
    /// The API server's passthrough table: a child serving a controller's endpoints is
    /// registered while it is supervised.
    pub routes: rdd_apiserver::passthrough::Routes,
}

impl Supervisor {
    /// Start `procs` in order and keep them running until `stop`; then stop them in reverse.
    pub async fn run(self: Arc<Self>, procs: Vec<Proc>, kubeconfigs: BTreeMap<String, PathBuf>) {
        let mut tasks = Vec::new();
        for p in &procs {
            let me = self.clone();
            let kc = kubeconfigs.get(p.name).cloned();
            let child_stop = CancellationToken::new();
            let p = *p;
            let token = child_stop.clone();
            tasks.push((
                p.name,
                child_stop,
                tokio::spawn(async move { me.keep(p, kc, token).await }),
            ));
            // The gateway first: controllers connect to it as they start.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop.cancelled().await;
        for (name, token, task) in tasks.into_iter().rev() {
            tracing::info!(%name, "stopping");
            token.cancel();
            let _ = task.await;
        }
    }

    async fn set(&self, name: &str, f: impl FnOnce(&mut ChildStatus)) {
        {
            let mut t = self.table.lock().await;
            let e = t.entry(name.to_string()).or_insert_with(|| ChildStatus {
                name: name.to_string(),
                ..Default::default()
            });
            f(e);
        }
        save(&self.inst, &self.table).await;
    }

    async fn keep(&self, p: Proc, kubeconfig: Option<PathBuf>, stop: CancellationToken) {
        if let Some(controller) = p.passthrough {
            // The route stays while the child is restarted: between two runs the API server
            // answers 503 (socket not listening), not 404.
            self.routes
                .register(controller, self.inst.passthrough_socket(controller));
        }
        self.keep_running(p, kubeconfig, stop).await;
        if let Some(controller) = p.passthrough {
            self.routes.remove(controller);
        }
    }

    async fn keep_running(&self, p: Proc, kubeconfig: Option<PathBuf>, stop: CancellationToken) {
        let exe = binary(p.name);
        let log_path = self.inst.log_dir().join(format!("{}.log", p.name));
        let mut backoff = Duration::from_millis(500);
        let mut restarts = 0u32;
        loop {
            if !exe.exists() {
                let msg = format!(
                    "{} not found (build it: cargo build -p {})",
                    exe.display(),
                    p.name
                );
                tracing::error!(name = p.name, "{msg}");
                self.set(p.name, |s| {
                    s.state = "missing".into();
                    s.error = Some(msg);
                    s.binary = exe.display().to_string();
                })
                .await;
                // Not a crash loop: nothing to restart until someone builds it.
                stop.cancelled().await;
                return;
            }
            let port = free_port();
            let admin = port.map(|p| format!("127.0.0.1:{p}"));
            let log = match open_log(&log_path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(name = p.name, error = %e, "cannot open log file");
                    return;
                }
            };
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.env("RDD_LOG_LEVEL", &self.log_level)
                .env("RDD_INSTANCE", &self.inst.suffix)
                .env("RDD_GATEWAY_SOCKET", self.inst.gateway_socket())
                // Each child exports spans under its own name, not the control plane's.
                .env_remove("OTEL_SERVICE_NAME")
                .stdin(Stdio::null())
                .stdout(
                    log.try_clone()
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                )
                .stderr(Stdio::from(log))
                .process_group(0)
                .kill_on_drop(true);
            if let Some(a) = &admin {
                cmd.env("RDD_ADMIN_ADDR", a);
            }
            if let Some(kc) = &kubeconfig {
                cmd.env("RDD_KUBECONFIG", kc).env("KUBECONFIG", kc);
            }
            // SAFETY: prctl in the forked child before exec; async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let started = Instant::now();
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    self.set(p.name, |s| {
                        s.state = "backoff".into();
                        s.error = Some(format!("spawn {}: {e}", exe.display()));
                    })
                    .await;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            };
            let pid = child.id().unwrap_or(0);
            tracing::info!(name = p.name, pid, "started");
            self.set(p.name, |s| {
                s.state = "running".into();
                s.pid = pid;
                s.restarts = restarts;
                s.admin_addr = admin.clone();
                s.ready = false;
                s.log = log_path.display().to_string();
                s.binary = exe.display().to_string();
                s.error = None;
            })
            .await;
            let exit = tokio::select! {
                r = child.wait() => r,
                _ = stop.cancelled() => {
                    self.set(p.name, |s| s.state = "stopping".into()).await;
                    terminate(&mut child, pid).await;
                    self.set(p.name, |s| { s.state = "stopped".into(); s.pid = 0; s.ready = false; }).await;
                    return;
                }
            };
            let how = exit.map(describe_exit).unwrap_or_else(|e| e.to_string());
            restarts += 1;
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(500);
            }
            tracing::warn!(name = p.name, pid, exit = %how, restarts, ?backoff, "child exited; restarting");
            self.set(p.name, |s| {
                s.state = "backoff".into();
                s.pid = 0;
                s.ready = false;
                s.restarts = restarts;
                s.last_exit = Some(how);
            })
            .await;
            tokio::select! {
                _ = stop.cancelled() => {
                    self.set(p.name, |s| s.state = "stopped".into()).await;
                    return;
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    /// Poll each running child's `/readyz` and record the answer.
    pub async fn watch_readiness(self: Arc<Self>) {
        loop {
            let snapshot: Vec<ChildStatus> = self.table.lock().await.values().cloned().collect();
            for c in snapshot {
                if c.state != "running" {
                    continue;
                }
                let Some(addr) = &c.admin_addr else { continue };
                let ready = probe(addr).await;
                if ready != c.ready {
                    self.set(&c.name, |s| s.ready = ready).await;
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// SIGTERM, then SIGKILL after 40 s (the whole shutdown is bounded by 45 s).
async fn terminate(child: &mut tokio::process::Child, pid: u32) {
    if pid != 0 {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn probe(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.1 200")
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    // Keep one previous generation once a log passes 10 MiB.
    if std::fs::metadata(path)
        .map(|m| m.len() > 10 << 20)
        .unwrap_or(false)
    {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// A token kubeconfig per process that talks to the API, under `<dir>/identities/`.
pub fn identities(
    inst: &Instance,
    procs: &[Proc],
    server: &str,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let dir = inst.dir().join("identities");
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let ca_path = inst.dir().join("tls").join("ca.crt");
    let ca = std::fs::read_to_string(&ca_path).with_context(|| ca_path.display().to_string())?;
    let mut out = BTreeMap::new();
    for p in procs.iter().filter(|p| p.kube) {
        let user = super::identities::controller_user(p.name)?;
        let req = rdd_apiserver::auth::TokenRequest {
            user: user.clone(),
            groups: vec![],
            replace: true,
        };
        let token = rdd_apiserver::auth::issue(&super::token::tokens_file(inst), &req)?;
        let path = dir.join(format!("{}.kubeconfig", p.name));
        rdd_apiserver::kubeconfig::write_token(&path, &ca, server, &inst.name(), &user, &token)?;
        out.insert(p.name.to_string(), path);
    }
    Ok(out)
}

/// The controller names a process serves, as published in the discovery ConfigMap.
fn serves(name: &str, enabled: &[&str]) -> Vec<String> {
    let names: &[&str] = match name {
        "container-controller" => &["engine", "container", "containernamespace"],
        "image-controller" => &["image"],
        "volume-controller" => &["volume"],
        "app-controller" => &["app"],
        "limavm-controller" => &["limavm"],
        _ => &[],
    };
    names
        .iter()
        .filter(|n| enabled.contains(n))
        .map(|n| n.to_string())
        .collect()
}

pub const DISCOVERY_NAMESPACE: &str = "rdd-system";
pub const DISCOVERY_NAME: &str = "rdd-controller-manager";
pub const READY_ANNOTATION: &str = "rdd.rancherdesktop.io/ready";

/// Keep `rdd-system/rdd-controller-manager` (resources.md §3.4) in step with the children:
/// recreated at start, the gateway's entry, `ready: "true"` once every child that could be
/// started is ready. Written only when its content changes.
pub async fn publish_discovery(
    client: kube::Client,
    table: Table,
    enabled: Vec<&'static str>,
    start: chrono::DateTime<chrono::Utc>,
    stop: CancellationToken,
) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};
    let api: Api<ConfigMap> = Api::namespaced(client, DISCOVERY_NAMESPACE);
    // Recreate so `creationTimestamp` says this start (cli.md §3.3 readiness).
    let _ = api.delete(DISCOVERY_NAME, &DeleteParams::default()).await;
    let mut last: Option<serde_json::Value> = None;
    loop {
        let children: Vec<ChildStatus> = table.lock().await.values().cloned().collect();
        let mut data = serde_json::Map::new();
        // Controllers publish their own entries (rdd_kit::discovery, one writer per key); the
        // supervisor writes only for the gateway, which has no API identity, and the annotation.
        for c in children
            .iter()
            .filter(|c| c.ready && c.name == "docker-gateway")
        {
            let port = c
                .admin_addr
                .as_deref()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(0);
            let entry = serde_json::json!({
                "healthPort": port,
                "metricsPort": port,
                "enabledControllers": serves(&c.name, &enabled),
                "enabledPassthroughs": {},
                "startTime": start.to_rfc3339(),
                "healthEndpoint": format!("http://127.0.0.1:{port}/healthz"),
                "metricsEndpoint": format!("http://127.0.0.1:{port}/metrics"),
            });
            data.insert(c.name.clone(), serde_json::Value::String(entry.to_string()));
        }
        let all_ready =
            !children.is_empty() && children.iter().all(|c| c.ready || c.state == "missing");
        let desired = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": DISCOVERY_NAME,
                "namespace": DISCOVERY_NAMESPACE,
                "annotations": { READY_ANNOTATION: if all_ready || children.is_empty() { "true" } else { "false" } },
            },
            "data": data,
        });
        if last.as_ref() != Some(&desired) {
            match api
                .patch(
                    DISCOVERY_NAME,
                    &PatchParams::apply(super::manifests::FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await
            {
                Ok(_) => last = Some(desired),
                Err(e) => tracing::warn!(error = %e, "updating the discovery ConfigMap"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
