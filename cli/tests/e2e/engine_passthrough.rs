//! Issue 13 end to end, through the real `rdd` binary, the supervised engine processes and the
//! limactl stand-in whose "VM" forwards the instance Docker socket to this machine's Docker:
//! container logs over the API server's passthrough (controllers.md §4.15), the instance's
//! Docker CLI context (§4.14) and `rdd run` (cli.md §7).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const ENGINE: &[&str] = &[
    "limactl-standin",
    "docker-gateway",
    "container-controller",
    "image-controller",
    "volume-controller",
    "app-controller",
    "limavm-controller",
];

struct Instance {
    home: tempfile::TempDir,
    docker_config: tempfile::TempDir,
    name: String,
    bin: PathBuf,
    label: String,
}

impl Instance {
    fn new(scope: &rdd_testkit::Scope) -> Instance {
        let bin = Path::new(env!("CARGO_BIN_EXE_rdd"))
            .parent()
            .unwrap()
            .to_path_buf();
        for b in ENGINE {
            assert!(
                bin.join(b).exists(),
                "{} missing: build the workspace (cargo build --bins)",
                bin.join(b).display()
            );
        }
        Instance {
            home: tempfile::tempdir().unwrap(),
            docker_config: tempfile::tempdir().unwrap(),
            name: format!("p{}", rand::random::<u32>() % 100_000),
            bin,
            label: scope.label(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rdd"));
        c.args(args)
            .env("HOME", self.home.path())
            .env("RDD_INSTANCE", &self.name)
            .env("RDD_LOG_LEVEL", "warn")
            .env("RDD_LIMACTL", self.bin.join("limactl-standin"))
            .env(
                "RDD_IMAGE_BASE_URL",
                crate::harness::repo_root().join("testkit/fixtures/images"),
            )
            .env("RDD_LABEL_SELECTOR", &self.label)
            // Never the real ~/.docker; and no frozen endpoint in the service's environment.
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        c
    }

    /// `rdd ARGS…` to its end, within 3 minutes (a hang fails the test naming the command).
    fn rdd(&self, args: &[&str]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = std::io::Read::read_to_end(&mut out, &mut b);
            b
        });
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut b);
            b
        });
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rdd {args:?} did not finish within 180 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }

    fn ok(&self, args: &[&str]) {
        let o = self.rdd(args);
        if !o.status.success() {
            // The service's own log says why it is not running or not ready.
            let log = self.home.path().join(format!(
                ".local/state/rancher-desktop-{}/rdd.stderr.log",
                self.name
            ));
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "rdd {args:?}: {}\n--- service log (last 40 lines, newest first) ---\n{}",
                String::from_utf8_lossy(&o.stderr),
                tail.join("\n")
            );
        }
    }

    fn dir(&self) -> PathBuf {
        self.home
            .path()
            .join(format!(".local/share/rancher-desktop-{}", self.name))
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.dir().join("config.yaml"))
            .output()
            .unwrap()
    }

    /// Processes of this instance running `exe` (found through their environment).
    fn processes(&self, exe: &str) -> Vec<u32> {
        let want = format!("RDD_INSTANCE={}", self.name);
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let first = cmd.split(|b| *b == 0).next().unwrap_or_default();
            if !Path::new(&*String::from_utf8_lossy(first)).ends_with(exe) {
                continue;
            }
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            if env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
                out.push(pid);
            }
        }
        out
    }

    fn wait_mirror(&self, id: &str) {
        wait_for("the container's mirror", Duration::from_secs(60), || {
            let o = self.kubectl(&["get", "containers", "-A", "-o", "name"]);
            String::from_utf8_lossy(&o.stdout).contains(id)
        });
    }

    fn context_name(&self) -> String {
        format!("rancher-desktop-{}", self.name)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.rdd(&["svc", "stop", "--timeout=30s"]);
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// How a test client authenticates to the API server.
enum Auth {
    /// The admin client certificate of the instance kubeconfig.
    Admin,
    Token(String),
    None,
}

/// TLS to the API server as the instance kubeconfig describes it.
struct Api {
    port: u16,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Api {
    fn from_kubeconfig(path: &Path) -> Api {
        use base64::Engine;
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let b64 = |p: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(v.pointer(p).and_then(|x| x.as_str()).unwrap())
                .unwrap()
        };
        let server = v
            .pointer("/clusters/0/cluster/server")
            .and_then(|s| s.as_str())
            .unwrap();
        Api {
            port: server.rsplit(':').next().unwrap().parse().unwrap(),
            ca: b64("/clusters/0/cluster/certificate-authority-data"),
            cert: b64("/users/0/user/client-certificate-data"),
            key: b64("/users/0/user/client-key-data"),
        }
    }

    fn tls(&self, auth: &Auth) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &self.ca[..]) {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match auth {
            Auth::Admin => {
                let certs = rustls_pemfile::certs(&mut &self.cert[..])
                    .map(|c| c.unwrap())
                    .collect();
                let key = rustls_pemfile::private_key(&mut &self.key[..])
                    .unwrap()
                    .unwrap();
                b.with_client_auth_cert(certs, key).unwrap()
            }
            _ => b.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    async fn stream(&self, auth: &Auth) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        self.tls(auth).connect(name, tcp).await.unwrap()
    }

    /// A WebSocket upgrade request answered with plain HTTP: (status, body).
    async fn refused(&self, path: &str, auth: &Auth) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = self.stream(auth).await;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            self.port
        );
        if let Auth::Token(t) = auth {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the answer");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert_ne!(status, 101, "{path} was upgraded");
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        (
            status,
            String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
        )
    }

    /// Open the logs WebSocket: Ok(socket), or Err((status, body)) for a plain HTTP answer.
    async fn logs(
        &self,
        path: &str,
        auth: &Auth,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        (u16, String),
    > {
        let mut req = format!("wss://127.0.0.1:{}{path}", self.port)
            .into_client_request()
            .unwrap();
        if let Auth::Token(t) = auth {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let tls = self.stream(auth).await;
        match tokio_tungstenite::client_async(req, tls).await {
            Ok((ws, resp)) => {
                assert_eq!(resp.status().as_u16(), 101);
                Ok(ws)
            }
            Err(WsError::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((status, body))
            }
            Err(e) => panic!("WebSocket handshake to {path}: {e}"),
        }
    }
}

/// Everything a logs socket delivers until its close: (binary payloads, close code, reason).
async fn read_all<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    limit: Duration,
) -> (Vec<Vec<u8>>, Option<CloseCode>, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut chunks = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return (chunks, None, "timed out".into()),
            Ok(None) => return (chunks, None, "ended without close".into()),
            Ok(Some(Err(e))) => return (chunks, None, e.to_string()),
            Ok(Some(Ok(Message::Binary(b)))) => chunks.push(b.to_vec()),
            Ok(Some(Ok(Message::Close(f)))) => {
                let (code, reason) = f
                    .map(|f| (Some(f.code), f.reason.to_string()))
                    .unwrap_or((None, String::new()));
                return (chunks, code, reason);
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn docker_run(scope: &rdd_testkit::Scope, name: &str, tty: bool, script: &str) -> String {
    let label = scope.label();
    let name = scope.name(name);
    let mut args = vec!["run", "-d", "--label", &label, "--name", &name];
    if tty {
        args.push("-t");
    }
    args.extend([rdd_testkit::busybox_image(), "sh", "-c", script]);
    rdd_testkit::docker(&args)
}

fn concat(chunks: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&chunks.concat()).into_owned()
}

/// Logs through `/passthrough/engine/logs/<id>`: authentication and authorization like any API
/// request, every §4.15 check as plain HTTP before the upgrade, TTY raw and non-TTY stdout plus
/// stderr, `tail`, `follow=false` ending with close 1000, live following, 503 once the engine
/// stops, and bounded memory in every relaying process while a client stops reading a 100 MB
/// stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_passthrough_streams_container_logs_over_an_authenticated_websocket() {
    let scope = rdd_testkit::Scope::new();
    let inst = Instance::new(&scope);
    inst.ok(&["svc", "start"]);
    let tty = docker_run(&scope, "tty", true, "echo hello; echo world; sleep 600");
    let plain = docker_run(
        &scope,
        "plain",
        false,
        "echo hello; echo world >&2; sleep 600",
    );
    let lines = docker_run(
        &scope,
        "lines",
        false,
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; done; sleep 600",
    );
    let slow = docker_run(
        &scope,
        "slow",
        false,
        // `world` only once the test creates /go: what follow=false must not wait for.
        "echo hello; while [ ! -e /go ]; do sleep 0.2; done; echo world; sleep 600",
    );
    let big = docker_run(
        &scope,
        "big",
        false,
        "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789 | head -c 100000000; sleep 600",
    );
    inst.ok(&["start", "--timeout=120s"]);
    for id in [&tty, &plain, &lines, &slow, &big] {
        inst.wait_mirror(id);
    }
    let api = Api::from_kubeconfig(&inst.dir().join("config.yaml"));
    let path = |id: &str, q: &str| format!("/passthrough/engine/logs/{id}{q}");

    // Authentication and authorization first, like every API request: no stream for either.
    let (code, _) = api.refused(&path(&tty, "?follow=false"), &Auth::None).await;
    assert_eq!(code, 401);
    let o = inst.rdd(&["svc", "token", "create", "--user", "nobody-special"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (code, body) = api
        .refused(&path(&tty, "?follow=false"), &Auth::Token(token))
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("/passthrough/engine/logs"), "{body}");

    // §4.15 checks as plain HTTP, in order.
    let (code, body) = api.refused(&path("not-hex", ""), &Auth::Admin).await;
    assert_eq!((code, body.trim()), (400, "Invalid container ID"));
    let unknown = "0".repeat(64);
    let (code, body) = api.refused(&path(&unknown, ""), &Auth::Admin).await;
    assert_eq!((code, body.trim()), (404, "Container not found"));
    let (code, body) = api
        .refused(&path(&tty, "?follow=maybe"), &Auth::Admin)
        .await;
    assert_eq!((code, body.trim()), (400, "Invalid follow parameter"));

    // TTY: raw console bytes (`\r\n` from the terminal), then close 1000.
    let mut ws = api
        .logs(&path(&tty, "?follow=false"), &Auth::Admin)
        .await
        .unwrap();
    let (chunks, code, reason) = read_all(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(concat(&chunks), "hello\r\nworld\r\n");
    assert_eq!(code, Some(CloseCode::Normal), "{reason}");
    assert_eq!(reason, "Closing connection");

    // Not a TTY: Docker's framing removed, stdout and stderr both delivered.
    let mut ws = api
        .logs(&path(&plain, "?follow=false"), &Auth::Admin)
        .await
        .unwrap();
    let (chunks, code, _) = read_all(&mut ws, Duration::from_secs(20)).await;
    let text = concat(&chunks);
    assert!(
        text.contains("hello\n") && text.contains("world\n"),
        "{text:?}"
    );
    assert_eq!(text.len(), "hello\nworld\n".len(), "{text:?}");
    assert_eq!(code, Some(CloseCode::Normal));

    // tail=2: only the last two lines.
    let mut ws = api
        .logs(&path(&lines, "?tail=2&follow=false"), &Auth::Admin)
        .await
        .unwrap();
    let (chunks, code, _) = read_all(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(concat(&chunks), "line9\nline10\n");
    assert_eq!(code, Some(CloseCode::Normal));

    // follow=false returns what is there now and ends; the container keeps running.
    let started = Instant::now();
    let mut ws = api
        .logs(&path(&slow, "?follow=false"), &Auth::Admin)
        .await
        .unwrap();
    let (chunks, code, _) = read_all(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(concat(&chunks), "hello\n");
    assert_eq!(code, Some(CloseCode::Normal));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        rdd_testkit::docker(&["inspect", "-f", "{{.State.Running}}", &slow]),
        "true"
    );
    // follow (the default) delivers what comes later, live.
    let mut ws = api.logs(&path(&slow, ""), &Auth::Admin).await.unwrap();
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut released = false;
    while !got.contains("world\n") {
        if got == "hello\n" && !released {
            rdd_testkit::docker(&["exec", &slow, "sh", "-c", ": > /go"]);
            released = true;
        }
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => got.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("following the logs: {other:?} after {got:?}"),
        }
    }
    assert!(released, "world came before the test asked for it");
    assert_eq!(got, "hello\nworld\n");
    ws.close(None).await.unwrap();

    // A client that stops reading: the relays (API server, container-controller, gateway)
    // block instead of buffering the 100 MB.
    let relays: Vec<(&str, u32)> = ["rdd", "container-controller", "docker-gateway"]
        .into_iter()
        .flat_map(|exe| inst.processes(exe).into_iter().map(move |p| (exe, p)))
        .collect();
    assert!(relays.len() >= 3, "relaying processes: {relays:?}");
    let before: u64 = relays.iter().map(|(_, p)| rss_kib(*p)).sum();
    let mut ws = api.logs(&path(&big, ""), &Auth::Admin).await.unwrap();
    let mut read = 0usize;
    while read < 1_000_000 {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => read += b.len(),
            Ok(Some(Ok(_))) => {}
            other => panic!("reading the big stream: {other:?}"),
        }
    }
    // Stop reading for 7 s (under the server's 10 s write deadline) and watch memory.
    let mut peak = before;
    for _ in 0..14 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now: u64 = relays.iter().map(|(_, p)| rss_kib(*p)).sum();
        peak = peak.max(now);
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "relays {relays:?}: {} MiB before, {} MiB peak while the client did not read",
        before / 1024,
        peak / 1024
    );
    assert!(
        grown_mib < 48,
        "relays grew by {grown_mib} MiB while the client did not read (before {} MiB)",
        before / 1024
    );
    // Reading again resumes the same stream.
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Binary(b)))) => assert!(!b.is_empty()),
        other => panic!("resuming the big stream: {other:?}"),
    }
    drop(ws);

    // The gateway dies under a following stream: close 1011 with the copy error.
    let mut ws = api.logs(&path(&slow, ""), &Auth::Admin).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
        Ok(Some(Ok(Message::Binary(_)))) => {}
        other => panic!("first chunk: {other:?}"),
    }
    for pid in inst.processes("docker-gateway") {
        // SAFETY: kill(2) of a process of this test's instance; the supervisor restarts it.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let (_, code, reason) = read_all(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(code, Some(CloseCode::Error), "{reason}");
    assert!(
        reason.starts_with("failed to copy container logs:"),
        "{reason}"
    );

    // The engine stopped: no watcher, 503 before any upgrade.
    inst.ok(&["stop", "--timeout=120s"]);
    let (code, body) = api
        .refused(&path(&tty, "?follow=false"), &Auth::Admin)
        .await;
    assert_eq!((code, body.trim()), (503, "Docker watcher not running"));
}

/// The Docker CLI context follows the engine: created when it connects, `currentContext`
/// switched only away from an unreachable context (every other field of config.json kept),
/// context removed and `currentContext` cleared when it stops. `rdd run` targets it, passes the
/// child's exit status through without a line of its own, and forwards SIGINT.
#[test]
fn docker_context_follows_the_engine_and_rdd_run_uses_it() {
    let scope = rdd_testkit::Scope::new();
    let inst = Instance::new(&scope);
    let cfg_dir = inst.docker_config.path().to_path_buf();
    let sha = |s: &str| {
        use sha2::Digest;
        hex_of(&sha2::Sha256::digest(s.as_bytes()))
    };
    // The current context points at a context whose endpoint does not answer.
    let gone_meta = cfg_dir
        .join("contexts/meta")
        .join(sha("gone"))
        .join("meta.json");
    std::fs::create_dir_all(gone_meta.parent().unwrap()).unwrap();
    std::fs::write(
        &gone_meta,
        r#"{"Name":"gone","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///nonexistent/rdd-test.sock","SkipTLSVerify":false}}}"#,
    )
    .unwrap();
    let original = serde_json::json!({
        "auths": {"registry.invalid": {"auth": "dXNlcjpwYXNz"}},
        "currentContext": "gone",
        "plugins": {"x": {"y": [1, 2, 3]}},
        "psFormat": "table {{.ID}}",
    });
    std::fs::write(
        cfg_dir.join("config.json"),
        serde_json::to_string_pretty(&original).unwrap(),
    )
    .unwrap();
    let read_cfg = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(cfg_dir.join("config.json")).unwrap()).unwrap()
    };

    inst.ok(&["svc", "start"]);
    inst.ok(&["start", "--timeout=120s"]);
    let ours = inst.context_name();
    let meta = cfg_dir
        .join("contexts/meta")
        .join(sha(&ours))
        .join("meta.json");
    wait_for("the instance context", Duration::from_secs(30), || {
        meta.exists() && read_cfg()["currentContext"] == ours.as_str()
    });
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["Name"], ours.as_str());
    let socket = inst
        .home
        .path()
        .join(format!(".rd{}/docker.sock", inst.name));
    assert_eq!(
        m["Endpoints"]["docker"]["Host"],
        format!("unix://{}", socket.display()).as_str()
    );
    let mut expected = original.clone();
    expected["currentContext"] = serde_json::json!(ours);
    assert_eq!(read_cfg(), expected, "every other field kept");

    // rdd run: the instance context; the docker CLI reaches the engine through it.
    let o = inst.rdd(&["run", "docker", "context", "show"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), ours);
    let o = inst.rdd(&[
        "run",
        "--",
        "docker",
        "info",
        "--format",
        "{{.ServerVersion}}",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
    // No Kubernetes controller writes <short dir>/kube.config here: KUBECONFIG is then unset
    // (the caller's own value removed too), never a path to a missing file.
    let env_line = "echo \"${KUBECONFIG-unset}|$DOCKER_HOST|$PATH\"";
    let run_env = || {
        let o = inst
            .command(&["run", "sh", "-c", env_line])
            .env("KUBECONFIG", "/nonexistent/caller-kubeconfig")
            .env("DOCKER_HOST", "unix:///nonexistent/caller.sock")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let short = inst.home.path().join(format!(".rd{}", inst.name));
    let kube_config = short.join("kube.config");
    assert!(!kube_config.exists());
    let out = run_env();
    assert!(
        out.starts_with(&format!("unset||{}:", short.join("bin").display())),
        "{out}"
    );
    // Once the standalone kubeconfig exists (what a Kubernetes controller writes, §6), the
    // child gets it, and kubectl reads it.
    std::fs::write(
        &kube_config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {ours}\n  cluster:\n    \
             server: https://127.0.0.1:1\nusers:\n- name: {ours}\n  user: {{}}\ncontexts:\n\
             - name: {ours}\n  context:\n    cluster: {ours}\n    user: {ours}\n\
             current-context: {ours}\n"
        ),
    )
    .unwrap();
    let out = run_env();
    assert!(
        out.starts_with(&format!(
            "{}||{}:",
            kube_config.display(),
            short.join("bin").display()
        )),
        "{out}"
    );
    let o = inst.rdd(&["run", "kubectl", "config", "current-context"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), ours);
    std::fs::remove_file(&kube_config).unwrap();

    // The child's exit status, and nothing else.
    let o = inst.rdd(&["run", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");

    // SIGINT to rdd reaches the child, whose own exit status comes back.
    let mut child = inst
        .command(&[
            "run",
            "sh",
            "-c",
            "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("rdd run printed ready");
    assert_eq!(line, "ready");
    // SAFETY: signalling the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the child's trap ran");
    assert_eq!(line, "got-int");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "rdd run did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(42));

    // Engine stopped: context gone, currentContext cleared, the rest kept.
    inst.ok(&["stop", "--timeout=120s"]);
    wait_for("the context's removal", Duration::from_secs(30), || {
        !meta.parent().unwrap().exists()
    });
    let after = read_cfg();
    assert!(after.get("currentContext").is_none(), "{after}");
    let mut expected = original.clone();
    expected.as_object_mut().unwrap().remove("currentContext");
    assert_eq!(after, expected);
    assert!(gone_meta.exists(), "another context is left alone");

    // With a healthy current context the engine leaves it alone.
    let mut cfg = read_cfg();
    cfg["currentContext"] = serde_json::json!("default");
    std::fs::write(cfg_dir.join("config.json"), cfg.to_string()).unwrap();
    inst.ok(&["start", "--timeout=120s"]);
    wait_for("the instance context", Duration::from_secs(30), || {
        meta.exists()
    });
    // The probe (3 s at most) has had its chance to run.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(read_cfg()["currentContext"], "default");

    // `rdd svc stop` with the engine running: the container-controller's shutdown awaits the
    // context's stop, so when svc stop returns the context is gone and a currentContext of
    // ours is cleared (no waiting here on purpose).
    let mut cfg = read_cfg();
    cfg["currentContext"] = serde_json::json!(ours);
    std::fs::write(cfg_dir.join("config.json"), cfg.to_string()).unwrap();
    inst.ok(&["svc", "stop", "--timeout=60s"]);
    assert!(
        !meta.parent().unwrap().exists(),
        "context removed by svc stop"
    );
    let after = read_cfg();
    assert!(after.get("currentContext").is_none(), "{after}");
    assert_eq!(after, expected, "every other field kept");
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
