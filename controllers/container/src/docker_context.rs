//! The instance's Docker CLI context (controllers.md §4.14). The container-controller owns it
//! (`docs/architecture.md`): the context follows the engine session of this process.
//!
//! | session | the context does |
//! |---|---|
//! | moby wanted and connected, first time since it was wanted | write `contexts/meta/<sha256(name)>/meta.json`; probe the current context and switch `currentContext` to ours when it is unhealthy |
//! | connected again after a gateway disconnect | nothing (already started) |
//! | no longer wanted (stopped, containerd, App gone), or the process stops | cancel and wait for the probe; clear `currentContext` if it is ours; remove our context |
//!
//! The probe, per §4.14: `DOCKER_HOST` or `DOCKER_CONTEXT` in this process's environment → do
//! nothing (they are a shell's frozen values); current empty or `default` → ping the default
//! endpoint; a named context → metadata missing is unhealthy, unreadable metadata or an endpoint
//! that is not `unix`/`tcp` (or uses TLS, which the probe does not speak) is assumed healthy,
//! else ping. Every ping has a 3 s timeout. A `config.json` that cannot be read or parsed is
//! never rewritten; one that can keeps every other field, in its order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdd_mirror::session::EngineState;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const PING_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} is not valid JSON ({1}); it is left as it is")]
    Parse(PathBuf, serde_json::Error),
    #[error("{0} is not a JSON object; it is left as it is")]
    NotObject(PathBuf),
}

/// The Docker config store and the instance's context in it.
#[derive(Clone, Debug)]
pub struct Store {
    /// `$DOCKER_CONFIG` or `~/.docker`.
    pub dir: PathBuf,
    /// `rancher-desktop-<suffix>`.
    pub name: String,
    /// The instance endpoint URL (`unix://<short dir>/docker.sock`).
    pub host: String,
}

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ContextError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| ContextError::Io(path.to_path_buf(), e);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.rdd-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes).map_err(io)?;
    // Keep the mode of the file replaced (config.json may hold credentials: 0600).
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o644);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl Store {
    fn meta_dir(&self, name: &str) -> PathBuf {
        self.dir.join("contexts/meta").join(sha256_hex(name))
    }

    pub fn meta_path(&self) -> PathBuf {
        self.meta_dir(&self.name).join("meta.json")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Create or replace the instance context's metadata (Docker CLI store layout).
    pub fn create(&self) -> Result<(), ContextError> {
        let meta = json!({
            "Name": self.name,
            "Metadata": {"Description": format!("Rancher Desktop {}", self.name)},
            "Endpoints": {"docker": {"Host": self.host, "SkipTLSVerify": false}},
        });
        write_atomic(&self.meta_path(), meta.to_string().as_bytes())
    }

    pub fn remove(&self) -> Result<(), ContextError> {
        let dir = self.meta_dir(&self.name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContextError::Io(dir, e)),
        }
    }

    /// `config.json` as an object; a missing file is an empty one.
    fn read_config(&self) -> Result<Map<String, Value>, ContextError> {
        let path = self.config_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(ContextError::Io(path, e)),
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ContextError::NotObject(path)),
            Err(e) => Err(ContextError::Parse(path, e)),
        }
    }

    fn write_config(&self, m: Map<String, Value>) -> Result<(), ContextError> {
        let mut text = serde_json::to_string_pretty(&Value::Object(m))
            .map_err(|e| ContextError::Parse(self.config_path(), e))?;
        text.push('\n');
        write_atomic(&self.config_path(), text.as_bytes())
    }

    /// `currentContext` of `config.json` (empty when unset or the file is missing).
    pub fn current(&self) -> Result<String, ContextError> {
        Ok(self
            .read_config()?
            .get("currentContext")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// Make the instance context the current one; every other field is kept.
    pub fn switch_to_ours(&self) -> Result<(), ContextError> {
        let mut m = self.read_config()?;
        m.insert("currentContext".into(), Value::String(self.name.clone()));
        self.write_config(m)
    }

    /// Clear `currentContext` if it names the instance context. Returns whether it did.
    pub fn clear_if_ours(&self) -> Result<bool, ContextError> {
        let mut m = self.read_config()?;
        if m.get("currentContext").and_then(Value::as_str) != Some(self.name.as_str()) {
            return Ok(false);
        }
        m.shift_remove("currentContext");
        self.write_config(m)?;
        Ok(true)
    }

    /// The endpoint of a named context: `Ok(None)` when its metadata does not exist,
    /// `Err(())` when it cannot be read (assumed healthy).
    fn endpoint_of(&self, name: &str) -> Result<Option<(String, bool)>, ()> {
        let dir = self.meta_dir(name);
        let bytes = match std::fs::read(dir.join("meta.json")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return Err(()),
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| ())?;
        let host = v["Endpoints"]["docker"]["Host"].as_str().ok_or(())?;
        let tls = self
            .dir
            .join("contexts/tls")
            .join(sha256_hex(name))
            .join("docker")
            .exists();
        Ok(Some((host.to_string(), tls)))
    }

    /// Whether the current context answers (§4.14's probe, without the environment check).
    pub async fn current_is_healthy(&self, current: &str) -> bool {
        if current.is_empty() || current == "default" {
            return ping(DEFAULT_HOST).await;
        }
        match self.endpoint_of(current) {
            Ok(None) => false,
            Err(()) => true,
            Ok(Some((_, true))) => true,
            Ok(Some((host, false))) => {
                if host.starts_with("unix://") || host.starts_with("tcp://") {
                    ping(&host).await
                } else {
                    // npipe (not on this OS) or a scheme the CLI handles by itself.
                    true
                }
            }
        }
    }
}

/// `GET /_ping` on a `unix://` or `tcp://` endpoint within 3 s: healthy when it answers HTTP.
pub async fn ping(host: &str) -> bool {
    async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) -> bool {
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.is_ok() && buf.starts_with(b"HTTP/1.")
    }
    let attempt = async {
        if let Some(path) = host.strip_prefix("unix://") {
            match tokio::net::UnixStream::connect(path).await {
                Ok(s) => exchange(s).await,
                Err(_) => false,
            }
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => exchange(s).await,
                Err(_) => false,
            }
        } else {
            false
        }
    };
    tokio::time::timeout(PING_TIMEOUT, attempt)
        .await
        .unwrap_or(false)
}

/// Whether this process's environment pins the Docker endpoint (then `currentContext` is left).
fn environment_pins_endpoint() -> bool {
    ["DOCKER_HOST", "DOCKER_CONTEXT"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

async fn probe_and_switch(store: Store, cancel: CancellationToken) {
    let current = match store.current() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Docker context: not switching");
            return;
        }
    };
    if environment_pins_endpoint() {
        tracing::info!("Docker context: DOCKER_HOST or DOCKER_CONTEXT is set; currentContext left");
        return;
    }
    let healthy = tokio::select! {
        _ = cancel.cancelled() => return,
        h = store.current_is_healthy(&current) => h,
    };
    if healthy || cancel.is_cancelled() || current == store.name {
        return;
    }
    match store.switch_to_ours() {
        Ok(()) => {
            tracing::info!(previous = %current, context = %store.name, "Docker context: currentContext switched to the instance")
        }
        Err(e) => tracing::warn!(error = %e, "Docker context: switching currentContext"),
    }
}

/// A started context: its probe can be cancelled and awaited.
struct Started {
    cancel: CancellationToken,
    probe: tokio::task::JoinHandle<()>,
}

fn start(store: &Store) -> Started {
    if let Err(e) = store.create() {
        tracing::warn!(error = %e, "Docker context: creating the instance context");
    } else {
        tracing::info!(context = %store.name, path = %store.meta_path().display(), "Docker context created");
    }
    let cancel = CancellationToken::new();
    let probe = tokio::spawn(probe_and_switch(store.clone(), cancel.clone()));
    Started { cancel, probe }
}

async fn stop(store: &Store, started: Started) {
    started.cancel.cancel();
    let _ = started.probe.await;
    match store.clear_if_ours() {
        Ok(true) => tracing::info!("Docker context: currentContext cleared"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "Docker context: clearing currentContext"),
    }
    match store.remove() {
        Ok(()) => tracing::info!(context = %store.name, "Docker context removed"),
        Err(e) => tracing::warn!(error = %e, "Docker context: removing the instance context"),
    }
}

/// Follow the engine session until `shutdown` (see the table above); the stop path also runs
/// when the process stops.
pub async fn follow(
    store: Store,
    mut state: watch::Receiver<EngineState>,
    shutdown: CancellationToken,
) {
    let mut started: Option<Started> = None;
    loop {
        let s = state.borrow_and_update().clone();
        if s.wanted && s.connected && started.is_none() {
            started = Some(start(&store));
        } else if !s.wanted
            && let Some(st) = started.take()
        {
            stop(&store, st).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = state.changed() => if r.is_err() { break },
        }
    }
    if let Some(st) = started.take() {
        stop(&store, st).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
            name: "rancher-desktop-t".into(),
            host: "unix:///nonexistent/docker.sock".into(),
        }
    }

    #[test]
    fn metadata_in_the_cli_layout() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        s.create().unwrap();
        // printf rancher-desktop-t | sha256sum
        let expected = d
            .path()
            .join("contexts/meta")
            .join(sha256_hex("rancher-desktop-t"))
            .join("meta.json");
        assert_eq!(s.meta_path(), expected);
        let v: Value = serde_json::from_slice(&std::fs::read(&expected).unwrap()).unwrap();
        assert_eq!(v["Name"], "rancher-desktop-t");
        assert_eq!(
            v["Endpoints"]["docker"]["Host"],
            "unix:///nonexistent/docker.sock"
        );
        assert_eq!(v["Endpoints"]["docker"]["SkipTLSVerify"], false);
        assert_eq!(
            v["Metadata"]["Description"],
            "Rancher Desktop rancher-desktop-t"
        );
        s.remove().unwrap();
        assert!(!expected.parent().unwrap().exists());
        s.remove().unwrap();
    }

    #[test]
    fn switch_keeps_unknown_fields_and_their_order_and_clear_only_ours() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let original = r#"{"zeta":{"nested":[1,2,{"x":null}]},"auths":{"r.example":{"auth":"abc"}},"currentContext":"gone","alpha":true}"#;
        std::fs::write(d.path().join("config.json"), original).unwrap();
        s.switch_to_ours().unwrap();
        let after: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        let mut want: Value = serde_json::from_str(original).unwrap();
        want["currentContext"] = json!("rancher-desktop-t");
        assert_eq!(after, want);
        let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["zeta", "auths", "currentContext", "alpha"]);
        assert!(s.clear_if_ours().unwrap());
        let cleared: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert!(cleared.get("currentContext").is_none());
        assert_eq!(cleared["auths"]["r.example"]["auth"], "abc");
        // Someone else's current context is left alone.
        std::fs::write(
            d.path().join("config.json"),
            r#"{"currentContext":"other"}"#,
        )
        .unwrap();
        assert!(!s.clear_if_ours().unwrap());
        assert_eq!(s.current().unwrap(), "other");
    }

    #[test]
    fn an_unparseable_config_is_never_rewritten() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let bad = "{\"currentContext\": \"x\", oops";
        std::fs::write(d.path().join("config.json"), bad).unwrap();
        assert!(matches!(s.current(), Err(ContextError::Parse(..))));
        assert!(s.switch_to_ours().is_err());
        assert!(s.clear_if_ours().is_err());
        assert_eq!(
            std::fs::read_to_string(d.path().join("config.json")).unwrap(),
            bad
        );
        // A missing file reads as no current context.
        let e = tempfile::tempdir().unwrap();
        assert_eq!(store(e.path()).current().unwrap(), "");
    }

    #[tokio::test]
    async fn health_of_named_contexts() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        // Not in the store: unhealthy.
        assert!(!s.current_is_healthy("missing").await);
        // Unreachable unix endpoint: unhealthy.
        let other = Store {
            name: "other".into(),
            ..s.clone()
        };
        other.create().unwrap();
        assert!(!s.current_is_healthy("other").await);
        // Unparseable metadata or an unknown scheme: assumed healthy.
        std::fs::write(other.meta_path(), "not json").unwrap();
        assert!(s.current_is_healthy("other").await);
        let ssh = Store {
            name: "ssh".into(),
            host: "ssh://me@host".into(),
            ..s.clone()
        };
        ssh.create().unwrap();
        assert!(s.current_is_healthy("ssh").await);
        // A listening socket that answers HTTP: healthy.
        let sock = d.path().join("d.sock");
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let mut buf = [0u8; 256];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nOK").await;
            }
        });
        let up = Store {
            name: "up".into(),
            host: format!("unix://{}", sock.display()),
            ..s.clone()
        };
        up.create().unwrap();
        assert!(s.current_is_healthy("up").await);
    }
}
