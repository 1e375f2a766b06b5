//! The real processes of one fault test: `rdd svc serve` (restartable on the same port, with
//! rdd's CRDs and admission policies), a killable `DockerProxy` in front of Docker,
//! `docker-gateway` on it, and the mirror controllers (container-, image-, volume-controller),
//! each under its own identity and mirroring only this test's objects (the scope's label).
//!
//! The binaries are the ones built next to the test (`cargo build --workspace --bins`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};
use rdd_testkit::{DockerProxy, MirrorControllers, Scope, free_port};
use serde_json::{Value, json};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// The fault tests start several processes each; on a 2-core machine they run one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A binary built next to this test.
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
        p.display()
    );
    p
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    /// SIGKILL, as a crash.
    pub fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        std::mem::forget(self);
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        rdd_testkit::terminate(&mut self.0, Duration::from_secs(5));
    }
}

pub fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1alpha1".into(),
        api_version: format!("{group}/v1alpha1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn containers_rs() -> ApiResource {
    resource("containers.rancherdesktop.io", "Container", "containers")
}
pub fn volumes_rs() -> ApiResource {
    resource("containers.rancherdesktop.io", "Volume", "volumes")
}
pub fn images_rs() -> ApiResource {
    resource("containers.rancherdesktop.io", "Image", "images")
}
pub fn apps_rs() -> ApiResource {
    resource("app.rancherdesktop.io", "App", "apps")
}

/// Only the API server, in `home` (whose instance directory may be a mount of its own).
pub struct Server {
    pub home: PathBuf,
    pub port: u16,
    proc: Option<Proc>,
}

impl Server {
    pub fn dir(home: &Path) -> PathBuf {
        home.join(".local/share/rancher-desktop-e2e")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        Server::dir(&self.home).join("config.yaml")
    }

    /// Start on `port` (0: any) and wait for the kubeconfig it writes once ready.
    pub fn start(home: &Path, port: u16) -> Server {
        let mut s = Server {
            home: home.to_path_buf(),
            port,
            proc: None,
        };
        s.spawn();
        s
    }

    /// `TEST_SERVER_LOG` sets the server's log filter (default `warn`).
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let child = Command::new(sibling_bin("rdd"))
            .args(["svc", "serve", "--secure-port", &self.port.to_string()])
            .arg("--controllers=")
            .env("HOME", &self.home)
            .env("RDD_INSTANCE", "e2e")
            .env(
                "RDD_LOG_LEVEL",
                std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rdd svc serve");
        self.proc = Some(Proc(child));
        let kc = self.kubeconfig();
        wait_for(Duration::from_secs(30), "rdd svc serve ready", || {
            kc.exists()
        });
        let text = std::fs::read_to_string(&kc).unwrap();
        let i = text.find("https://127.0.0.1:").unwrap() + "https://127.0.0.1:".len();
        let port: u16 = text[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap();
        if self.port != 0 {
            assert_eq!(port, self.port, "the server came back on another port");
        }
        self.port = port;
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map(Proc::pid).unwrap_or(0)
    }

    /// How the server exited, if it did.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc
            .as_mut()
            .and_then(|p| p.0.try_wait().ok().flatten())
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Start again on the same port (clients and controllers keep their kubeconfigs).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub async fn client(&self) -> Client {
        client_for(&self.kubeconfig()).await
    }
}

/// A client that does not retry 503s: kube-rs retries them by default (15 times, backing off
/// up to minutes), which would hide how the server answers.
pub async fn client_no_retry(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    Client::try_from(cfg).unwrap()
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

pub struct Env {
    // Order matters for drop: controllers first, then gateway, then the server.
    pub controllers: BTreeMap<String, Proc>,
    pub gateway: Option<Proc>,
    pub server: Server,
    pub proxy: DockerProxy,
    pub scope: Scope,
    pub home: tempfile::TempDir,
    pub ns: String,
    pub client: Client,
    pub gw_socket: PathBuf,
    pub gw_admin: String,
    pub gw_extra: Vec<String>,
    /// Identities and admin addresses of the controllers (kept across restarts).
    pub kinds: MirrorControllers,
}

impl Env {
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let o = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.server.kubeconfig())
            .env("HOME", self.home.path())
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    }

    /// The API server with CRDs, admission policies, NS and the App (running, moby); the proxy
    /// and the gateway (`gw_extra` flags). Controllers start with [`start_kind`](Self::start_kind).
    pub async fn start(gw_extra: &[&str]) -> Env {
        rdd_testkit::busybox_image();
        let home = tempfile::tempdir().unwrap();
        let server = Server::start(home.path(), 0);
        let scope = Scope::new();
        let dir = home.path().join("gw");
        std::fs::create_dir_all(&dir).unwrap();
        let proxy = DockerProxy::start(&dir.join("docker.sock")).await;
        let client = server.client().await;
        let gw_socket = dir.join("gateway.sock");
        let kinds =
            MirrorControllers::new(&sibling_bin("rdd"), home.path(), &gw_socket, &scope.label());
        let mut env = Env {
            controllers: BTreeMap::new(),
            gateway: None,
            server,
            proxy,
            scope,
            ns: String::new(),
            client,
            gw_socket,
            gw_admin: format!("127.0.0.1:{}", free_port()),
            gw_extra: gw_extra.iter().map(|s| s.to_string()).collect(),
            home,
            kinds,
        };
        env.start_gateway();
        env.ns = format!("faults-{}", env.scope.id);
        let root = repo_root();
        for d in ["deploy/crds", "deploy/admission"] {
            let p = root.join(d);
            env.kubectl_ok(&["apply", "-f", p.to_str().unwrap()]);
        }
        env.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=30s",
        ]);
        env.kubectl_ok(&["create", "namespace", &env.ns]);
        let app = json!({
            "apiVersion": "app.rancherdesktop.io/v1alpha1",
            "kind": "App",
            "metadata": {"name": "app"},
            "spec": {"running": true, "namespace": env.ns, "containerEngine": {"name": "moby"}},
        });
        env.apps()
            .create(
                &PostParams::default(),
                &serde_json::from_value(app).unwrap(),
            )
            .await
            .unwrap();
        env.set_running(true).await;
        env
    }

    pub fn apps(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &apps_rs())
    }

    /// Start `name` (`container-controller`, `image-controller`, `volume-controller`) under its
    /// own identity, mirroring only this test's objects.
    pub fn start_kind(&mut self, name: &str) {
        let child = self.kinds.start(name, &sibling_bin(name));
        self.controllers.insert(name.to_string(), Proc(child));
    }

    pub fn start_all_kinds(&mut self) {
        for k in [
            "container-controller",
            "image-controller",
            "volume-controller",
        ] {
            self.start_kind(k);
        }
    }

    /// SIGKILL of a controller, as a crash.
    pub fn kill9_kind(&mut self, name: &str) {
        if let Some(p) = self.controllers.remove(name) {
            p.kill9();
        }
    }

    pub fn controller_pid(&self, name: &str) -> u32 {
        self.controllers.get(name).map(Proc::pid).unwrap_or(0)
    }

    pub fn start_gateway(&mut self) {
        let _ = std::fs::remove_file(&self.gw_socket);
        let child = Command::new(sibling_bin("docker-gateway"))
            .arg("--docker-host")
            .arg(format!("unix://{}", self.proxy.path.display()))
            .arg("--socket")
            .arg(&self.gw_socket)
            .args(["--admin-addr", &self.gw_admin])
            .args(&self.gw_extra)
            .env("HOME", self.home.path())
            .env(
                "RDD_LOG_LEVEL",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("RDD_RECONNECT_MIN_MS", "100")
            .env("RDD_RECONNECT_MAX_MS", "500")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.gateway = Some(Proc(child));
        let s = self.gw_socket.clone();
        wait_for(Duration::from_secs(20), "gateway socket", || s.exists());
    }

    /// Patch the App's `Running` condition (no app-controller runs here).
    pub async fn set_running(&self, running: bool) {
        let app = self.apps().get("app").await.unwrap();
        let status = if running { "True" } else { "False" };
        self.apps()
            .patch_status(
                "app",
                &PatchParams::apply("test-app-controller").force(),
                &Patch::Apply(json!({
                    "apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
                    "status": {"conditions": [{
                        "type": "Running", "status": status, "reason": "Test", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": app.metadata.generation.unwrap_or(1),
                    }]},
                })),
            )
            .await
            .unwrap();
    }

    pub async fn app_condition(&self, type_: &str) -> Option<Value> {
        let app = self.apps().get_opt("app").await.ok()??;
        app.data["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
    }

    /// Wait for the App condition `type_` with this reason.
    pub async fn wait_cond(&self, type_: &str, reason: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.app_condition(type_).await
                && c["reason"] == reason
            {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "{type_} never became {reason}: {:?}",
                self.app_condition(type_).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn list(&self, rs: &ApiResource) -> Vec<DynamicObject> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, rs);
        api.list(&Default::default()).await.unwrap().items
    }

    /// Container mirrors as (ID, status.status).
    pub async fn container_mirrors(&self) -> Vec<(String, String)> {
        self.list(&containers_rs())
            .await
            .into_iter()
            .map(|o| {
                let st = o.data["status"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                (o.name_any(), st)
            })
            .collect()
    }

    /// Volume mirrors as (status.name, status.driver).
    pub async fn volume_mirrors(&self) -> Vec<(String, String)> {
        self.list(&volumes_rs())
            .await
            .into_iter()
            .map(|o| {
                let s = &o.data["status"];
                (
                    s["name"].as_str().unwrap_or("").to_string(),
                    s["driver"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// `docker ps -a` of this scope as (ID, state).
    pub fn docker_containers(&self) -> Vec<(String, String)> {
        let out = rdd_testkit::docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label={}", self.scope.label()),
            "--format",
            "{{.ID}} {{.State}}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// `docker volume ls` of this scope as (name, driver).
    pub fn docker_volumes(&self) -> Vec<(String, String)> {
        let out = rdd_testkit::docker(&[
            "volume",
            "ls",
            "--filter",
            &format!("label={}", self.scope.label()),
            "--format",
            "{{.Name}} {{.Driver}}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Differences between the container and volume mirrors and Docker (empty: equal).
    pub async fn mirror_diffs(&self) -> Vec<rdd_faults::Diff> {
        let mut d = rdd_faults::mirrors_vs_docker(
            &self.docker_containers(),
            &self.container_mirrors().await,
        );
        d.extend(rdd_faults::mirrors_vs_docker(
            &self.docker_volumes(),
            &self.volume_mirrors().await,
        ));
        d
    }

    /// Wait until the container and volume mirrors equal Docker.
    pub async fn wait_equal(&self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.mirror_diffs().await;
            if d.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: mirrors differ from Docker: {}",
                rdd_faults::describe(&d)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Docker calls the gateway started (`docker_gateway_docker_calls_started_total`), by
    /// operation: counted before the call, so a call whose client died mid-way is counted too.
    pub fn docker_started(&self) -> BTreeMap<String, u64> {
        metric_by(
            &self.gw_admin,
            "docker_gateway_docker_calls_started_total{",
            "operation",
        )
    }

    /// Docker calls that returned, by `operation/code`.
    pub fn docker_calls(&self) -> BTreeMap<String, u64> {
        let text = http_get(&self.gw_admin, "/metrics");
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("docker_gateway_docker_requests_total{") else {
                continue;
            };
            let op = label(rest, "operation");
            let code = label(rest, "code");
            *out.entry(format!("{op}/{code}")).or_insert(0) += value(line);
        }
        out
    }

    /// `docker create`/`run` with this scope's label; returns the full ID.
    pub fn container(&self, name: &str, run: bool, extra: &[&str], cmd: &[&str]) -> String {
        let name = self.scope.name(name);
        let label = self.scope.label();
        let mut args = vec![if run { "run" } else { "create" }];
        if run {
            args.push("-d");
        }
        args.extend(["--label", &label, "--name", &name]);
        args.extend(extra);
        args.push(rdd_testkit::IMAGE);
        args.extend(cmd);
        rdd_testkit::docker(&args)
    }
}

fn label(rest: &str, name: &str) -> String {
    rest.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("")
        .to_string()
}

fn value(line: &str) -> u64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Sum a counter family on `addr`'s `/metrics` by one label.
pub fn metric_by(addr: &str, prefix: &str, by: &str) -> BTreeMap<String, u64> {
    let text = http_get(addr, "/metrics");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(prefix) {
            *out.entry(label(rest, by)).or_insert(0) += value(line);
        }
    }
    out
}

pub fn wait_for(timeout: Duration, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain HTTP/1.0 GET (admin endpoints).
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
