//! The real processes of one test: `rdd svc serve` (with rdd's CRDs and admission policies as a
//! real install has them), a `DockerProxy` in front of the Docker socket, `docker-gateway` on
//! it, and the mirror controllers (container-, image-, volume-controller) each under its own
//! least-privilege identity. Docker calls are counted at the gateway's `/metrics`, API writes at
//! the server (watch events), each controller's API requests at its `/metrics`
//! (`rest_client_requests_total`).
//!
//! Shared by the e2e tests of `container-controller`, `image-controller`, `volume-controller` and
//! `rdd-mirror` (`#[path]` includes); the binaries are the ones built next to the test:
//! `cargo build -p rdd -p docker-gateway -p container-controller -p image-controller -p
//! volume-controller`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use rdd_api::app::App;
use rdd_api::containers::Container;
use rdd_testkit::{DockerProxy, MirrorControllers, Scope, free_port};
use serde_json::{Value, json};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// A binary built next to this test; fails fast naming the path when it is missing (R-ENG-S11).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build -p rdd -p docker-gateway -p container-controller -p image-controller -p volume-controller`",
        p.display()
    );
    p
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        rdd_testkit::terminate(&mut self.0, Duration::from_secs(5));
    }
}

pub struct Env {
    // Order matters for drop: controllers first, then gateway, then the server.
    controllers: BTreeMap<String, Proc>,
    gateway: Option<Proc>,
    server: Option<Proc>,
    pub proxy: DockerProxy,
    pub scope: Scope,
    pub home: tempfile::TempDir,
    pub ns: String,
    pub client: Client,
    pub gw_socket: PathBuf,
    pub gw_admin: String,
    /// Identities and admin addresses of the controllers (kept across restarts).
    pub kinds: MirrorControllers,
}

impl Env {
    pub fn kubeconfig(&self) -> PathBuf {
        self.home
            .path()
            .join(".local/share/rancher-desktop-e2e/config.yaml")
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let o = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
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

    /// Start the API server, install the CRDs and admission policies, create NS and the App
    /// (running, moby); then the proxy and gateway. The controller starts with
    /// [`start_controller`](Self::start_controller).
    pub async fn start() -> Env {
        let rdd = sibling_bin("rdd");
        let gw_bin = sibling_bin("docker-gateway");
        rdd_testkit::busybox_image();
        let home = tempfile::tempdir().unwrap();
        let server = Command::new(&rdd)
            .args(["svc", "serve", "--secure-port", "0", "--controllers="])
            .env("HOME", home.path())
            .env("RDD_INSTANCE", "e2e")
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rdd svc serve");
        let scope = Scope::new();
        let dir = home.path().join("gw");
        std::fs::create_dir_all(&dir).unwrap();
        let proxy = DockerProxy::start(&dir.join("docker.sock")).await;
        let gw_socket = dir.join("gateway.sock");
        let gw_admin = format!("127.0.0.1:{}", free_port());
        let gateway = spawn_gateway(&gw_bin, &proxy.path, &gw_socket, &gw_admin, home.path());
        let kubeconfig = home
            .path()
            .join(".local/share/rancher-desktop-e2e/config.yaml");
        wait_for(Duration::from_secs(30), "rdd svc serve ready", || {
            kubeconfig.exists()
        });
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(cfg).unwrap();
        let kinds = MirrorControllers::new(&rdd, home.path(), &gw_socket, &scope.label());
        let mut env = Env {
            controllers: BTreeMap::new(),
            gateway: Some(Proc(gateway)),
            server: Some(Proc(server)),
            proxy,
            scope,
            ns: String::new(),
            client,
            home,
            gw_socket,
            gw_admin,
            kinds,
        };
        env.ns = format!("mirror-{}", env.scope.id);
        wait_for(Duration::from_secs(20), "gateway socket", || {
            env.gw_socket.exists()
        });
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
        let apps: Api<App> = Api::all(env.client.clone());
        apps.create(
            &PostParams::default(),
            &serde_json::from_value(app).unwrap(),
        )
        .await
        .unwrap();
        env.set_running(true).await;
        env
    }

    /// Start the container-controller.
    pub fn start_controller(&mut self) {
        self.start_kind("container-controller");
    }

    /// Start `name` (`container-controller`, `image-controller`, `volume-controller`) under its
    /// own identity (`deploy/rbac/<name>.yaml`, token minted by `rdd svc token create`),
    /// mirroring only this test's objects (the scope's label selector).
    pub fn start_kind(&mut self, name: &str) {
        let child = self.kinds.start(name, &sibling_bin(name));
        self.controllers.insert(name.to_string(), Proc(child));
    }

    /// Admin address of controller `name` (fixed per test, kept across restarts).
    pub fn admin(&self, name: &str) -> &str {
        &self.kinds.admin[name]
    }

    pub fn stop_kind(&mut self, name: &str) {
        self.controllers.remove(name);
    }

    /// API requests `name` made so far (`rest_client_requests_total` on its `/metrics`).
    pub fn api_requests(&self, name: &str) -> u64 {
        let text = http_get(self.admin(name), "/metrics");
        text.lines()
            .filter(|l| l.starts_with("rest_client_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Kill the gateway process (SIGKILL, as a crash).
    pub fn kill_gateway(&mut self) {
        if let Some(mut p) = self.gateway.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    pub fn start_gateway(&mut self) {
        let child = spawn_gateway(
            &sibling_bin("docker-gateway"),
            &self.proxy.path,
            &self.gw_socket,
            &self.gw_admin,
            self.home.path(),
        );
        self.gateway = Some(Proc(child));
        wait_for(Duration::from_secs(20), "gateway socket", || {
            self.gw_socket.exists()
        });
    }

    pub fn stop_controller(&mut self) {
        self.stop_kind("container-controller");
    }

    /// Patch the App's `Running` condition (there is no app-controller yet).
    pub async fn set_running(&self, running: bool) {
        let apps: Api<App> = Api::all(self.client.clone());
        let app = apps.get("app").await.unwrap();
        let status = if running { "True" } else { "False" };
        let body = json!({"status": {"conditions": [{
            "type": "Running", "status": status, "reason": "Test", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": app.metadata.generation.unwrap_or(1),
        }]}});
        apps.patch_status(
            "app",
            &PatchParams::apply("test-app-controller").force(),
            &Patch::Apply(json!({
                "apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
                "status": body["status"],
            })),
        )
        .await
        .unwrap();
    }

    pub async fn app_condition(&self, type_: &str) -> Option<Value> {
        let apps: Api<App> = Api::all(self.client.clone());
        let app = apps.get_opt("app").await.unwrap()?;
        let v = serde_json::to_value(app).unwrap();
        v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
    }

    /// Wait for `ContainersSynced` with this reason.
    pub async fn wait_synced(&self, reason: &str, timeout: Duration) -> Value {
        self.wait_cond("ContainersSynced", reason, timeout).await
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

    /// Every object of `K` in NS, by name.
    pub async fn list<K>(&self) -> BTreeMap<String, K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| (o.name_any(), o))
            .collect()
    }

    /// Wait until `f` holds for the objects of `K` in NS.
    pub async fn wait_list<K>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&BTreeMap<String, K>) -> bool,
    ) -> BTreeMap<String, K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.list::<K>().await;
            if f(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                m.keys().collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn containers(&self) -> Api<Container> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn mirrors(&self) -> BTreeMap<String, Container> {
        self.containers()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect()
    }

    /// Wait until `f` holds for the mirror map.
    pub async fn wait_mirrors(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&BTreeMap<String, Container>) -> bool,
    ) -> BTreeMap<String, Container> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.mirrors().await;
            if f(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `docker ps -a` of this scope: id → state.
    pub fn docker_state(&self) -> BTreeMap<String, String> {
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

    /// Docker calls the gateway made, by operation.
    pub fn docker_calls(&self) -> BTreeMap<String, u64> {
        let text = http_get(&self.gw_admin, "/metrics");
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("docker_gateway_docker_requests_total{") else {
                continue;
            };
            let op = rest
                .split("operation=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string();
            let n: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            *out.entry(op).or_insert(0) += n;
        }
        out
    }

    pub fn docker_total(&self) -> u64 {
        self.docker_calls().values().sum()
    }

    /// `docker create`/`run` with this scope's label and extra arguments; returns the full ID.
    pub fn container(&self, name: &str, run: bool, extra: &[&str], cmd: &[&str]) -> String {
        let name = self.scope.name(name);
        let label = self.scope.label();
        let mut args = vec![if run { "run" } else { "create" }];
        if run {
            args.push("-d");
        }
        args.extend(["--label", &label, "--name", &name, "--stop-timeout", "1"]);
        args.extend(extra);
        args.push(rdd_testkit::IMAGE);
        args.extend(cmd);
        rdd_testkit::docker(&args)
    }
}

fn spawn_gateway(bin: &Path, docker: &Path, socket: &Path, admin: &str, home: &Path) -> Child {
    let _ = std::fs::remove_file(socket);
    Command::new(bin)
        .arg("--docker-host")
        .arg(format!("unix://{}", docker.display()))
        .arg("--socket")
        .arg(socket)
        .args(["--admin-addr", admin])
        .env("HOME", home)
        .env("RDD_LOG_LEVEL", "warn")
        .env("RDD_RECONNECT_MIN_MS", "100")
        .env("RDD_RECONNECT_MAX_MS", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
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

/// Collect watch events on `path` (e.g. `/apis/…/containers?watch=1&resourceVersion=N`) for
/// `dur`: every write the server commits shows up here.
pub async fn watch_for(client: &Client, path: &str, dur: Duration) -> Vec<Value> {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method("GET")
        .uri(path)
        .body(Vec::new())
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + dur;
    while let Ok(Some(Ok(f))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Ok(d) = f.into_data() {
            buf.extend_from_slice(&d);
        }
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                out.push(v);
            }
        }
    }
    out
}
