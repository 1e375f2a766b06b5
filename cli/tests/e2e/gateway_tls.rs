//! The cluster deployment's gateway link (docs/deploy.md): a docker-gateway serving gRPC over
//! TCP with mutual TLS, a mirror controller reaching it with a client certificate, and clients
//! without one, or with one of another CA, refused. Real processes: `rdd svc start` (every
//! controller but the volume-controller) and `rdd start`, then a docker-gateway and a
//! volume-controller run by hand as a cluster runs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::harness::{fixture, repo_root};
use crate::observability::{Stack, bin_dir, free_port, http_get, stderr};

/// The gateway's server name in the chart's certificate and in the recipe's
/// (`<release>-docker-gateway.<namespace>.svc`).
const SERVER_NAME: &str = "rdd-docker-gateway.rdd-system.svc";

/// A child process stopped (SIGTERM, then SIGKILL) when dropped; its stderr goes to `log`.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        rdd_testkit::terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// PEM files of one side: `ca.crt` verifies the peer, `tls.crt`/`tls.key` are its own.
#[derive(Clone)]
struct Tls {
    dir: PathBuf,
}

impl Tls {
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// A docker-gateway on the host's Docker, serving TCP with mutual TLS (`server`).
fn gateway(dir: &Path, name: &str, server: &Tls) -> (Proc, String, String) {
    let grpc = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(bin_dir().join("docker-gateway"));
    cmd.env("HOME", dir)
        .env("RDD_INSTANCE", format!("tls-{name}"))
        .env("RDD_LOG_LEVEL", "info")
        .args(["--docker-host", "unix:///var/run/docker.sock"])
        .arg("--socket")
        .arg(dir.join(format!("{name}.sock")))
        .args(["--listen-addr", &grpc, "--admin-addr", &admin])
        // The flags the chart's DaemonSet passes.
        .arg("--tls-cert")
        .arg(server.cert())
        .arg("--tls-key")
        .arg(server.key())
        .arg("--tls-client-ca")
        .arg(server.ca());
    let p = Proc::spawn(&mut cmd, dir.join(format!("{name}.log")));
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&admin, "/readyz").is_none_or(|(c, _)| c != 200) {
        assert!(
            Instant::now() < deadline,
            "gateway {name} not ready: {}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (p, grpc, admin)
}

/// `Ping` through the controllers' own client (`rdd_mirror::gateway::connect_tcp`), presenting
/// `client`'s certificate when given; the CA is always the one of the gateway's certificate.
fn ping(
    rt: &tokio::runtime::Runtime,
    grpc: &str,
    ca: &Path,
    client: Option<&Tls>,
) -> Result<(), String> {
    let target = rdd_mirror::gateway::TcpTarget {
        addr: format!("https://{grpc}"),
        ca: Some(ca.to_path_buf()),
        cert: client.map(Tls::cert),
        key: client.map(Tls::key),
        server_name: Some(SERVER_NAME.into()),
    };
    rt.block_on(async {
        let mut gw = rdd_mirror::gateway::connect_tcp(&target).map_err(|e| e.to_string())?;
        match tokio::time::timeout(
            Duration::from_secs(10),
            gw.ping(rdd_proto::v1::PingRequest {}),
        )
        .await
        {
            Err(_) => Err("no answer in 10 s".to_string()),
            Ok(Err(status)) => Err(format!("{status}")),
            Ok(Ok(_)) => Ok(()),
        }
    })
}

/// How many `Ping` calls reached the gateway's service (`grpc_server_started_total`).
fn pings_started(admin: &str) -> u64 {
    let (_, text) = http_get(admin, "/metrics").expect("gateway /metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("grpc_server_started_total{") && l.contains("grpc_method=\"Ping\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn metric(admin: &str, name: &str) -> Option<f64> {
    let (_, text) = http_get(admin, "/metrics")?;
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The `sh` block of docs/deploy.md that makes the certificates with openssl and stores them
/// as the two Secrets.
fn recipe() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/deploy.md")).unwrap();
    doc.split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("openssl req"))
        .expect("docs/deploy.md has the openssl recipe")
        .to_string()
}

/// A Secret of `rdd-system` written as files under `dir/<name>`.
fn secret_files(stack: &Stack, name: &str, dir: &Path) -> Tls {
    let o = stack.kubectl(&["-n", "rdd-system", "get", "secret", name, "-o", "json"]);
    assert!(o.status.success(), "get secret {name}: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["type"], "kubernetes.io/tls", "{v}");
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        let b64 = v["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has {key}"));
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        std::fs::write(out.join(key), pem).unwrap();
    }
    Tls { dir: out }
}

/// The chart's generated certificates serve a volume-controller over mutual TLS: it mirrors a
/// Docker volume into `rdd svc` through that gateway. A client without a certificate and one
/// whose certificate another CA signed (docs/deploy.md's openssl recipe, run as written) are
/// refused at the handshake: their calls never reach the service. A gateway with the recipe's
/// certificates serves the recipe's client and refuses the chart's.
#[test]
fn deploy_gateway_serves_a_controller_over_mutual_tls_and_refuses_other_clients() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stack = Stack::start_with(&["svc", "start", "--controllers=*,-volume"], &[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The chart's Secrets (Helm's genCA / genSignedCert), rendered offline.
    let python = repo_root().join(".venv/bin/python");
    let o = Command::new(&python)
        .arg(fixture("chart_certs.py"))
        .arg(repo_root().join("charts/rdd"))
        .arg(dir.join("chart"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "chart_certs.py: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let chart_server = Tls {
        dir: dir.join("chart/rdd-gateway-tls"),
    };
    let chart_client = Tls {
        dir: dir.join("chart/rdd-gateway-client-tls"),
    };

    // The documented recipe for kustomize users, as written, into rdd svc's rdd-system.
    let work = dir.join("recipe");
    std::fs::create_dir_all(&work).unwrap();
    let o = Command::new("sh")
        .args(["-e", "-c", &recipe()])
        .current_dir(&work)
        .env("KUBECONFIG", stack.kubeconfig())
        .env("HOME", stack.home.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "the openssl recipe: {}", stderr(&o));
    let recipe_server = secret_files(&stack, "rdd-gateway-tls", &dir.join("secrets"));
    let recipe_client = secret_files(&stack, "rdd-gateway-client-tls", &dir.join("secrets"));

    let volume = stack.scope.volume("tls");
    stack.start_app();

    // 1. The chart's certificates: the volume-controller, by hand with its own identity, reaches
    // the gateway only over TCP and mirrors the volume.
    let (gw, grpc, admin) = gateway(dir, "chart", &chart_server);
    let kubeconfig = dir.join("volume-controller.kubeconfig");
    let o = stack.rdd(&[
        "svc",
        "token",
        "create",
        "--controller",
        "volume-controller",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "token create: {}", stderr(&o));
    let mut cmd = Command::new(bin_dir().join("volume-controller"));
    cmd.env("HOME", stack.home.path())
        .env("RDD_INSTANCE", &stack.name)
        .env("RDD_KUBECONFIG", &kubeconfig)
        .env("RDD_LABEL_SELECTOR", stack.scope.label())
        .env("RDD_ADMIN_ADDR", "127.0.0.1:0")
        .env("RDD_LOG_LEVEL", "info")
        // Nothing listens here: a controller that fell back to the socket would mirror nothing.
        .env("RDD_GATEWAY_SOCKET", dir.join("no-gateway.sock"))
        .env("RDD_GATEWAY_ADDR", format!("https://{grpc}"))
        .env("RDD_GATEWAY_TLS_CA", chart_client.ca())
        .env("RDD_GATEWAY_TLS_CERT", chart_client.cert())
        .env("RDD_GATEWAY_TLS_KEY", chart_client.key())
        .env("RDD_GATEWAY_TLS_SERVER_NAME", SERVER_NAME);
    let controller = Proc::spawn(&mut cmd, dir.join("volume-controller.log"));
    let mirrored = || {
        let o = stack.kubectl(&["get", "volumes", "-A", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| {
                v["items"]
                    .as_array()?
                    .iter()
                    .find(|i| i["status"]["name"] == volume.as_str())
                    .cloned()
            })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mirror = loop {
        if let Some(m) = mirrored() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "volume {volume} never mirrored; volume-controller:\n{}\ngateway:\n{}",
            controller.log(),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(mirror["status"]["driver"], "local", "{mirror}");
    // Its event subscription is on this gateway.
    assert_eq!(metric(&admin, "docker_gateway_subscribers"), Some(1.0));

    // 2. Refused clients: no certificate; a certificate of another CA. Neither call reaches the
    // service; the chart's client certificate does.
    let before = pings_started(&admin);
    let e = ping(&rt, &grpc, &chart_client.ca(), None).expect_err("a client without a certificate");
    eprintln!("without a client certificate: {e}");
    let e = ping(&rt, &grpc, &chart_client.ca(), Some(&recipe_client))
        .expect_err("a client certificate of another CA");
    eprintln!("with another CA's client certificate: {e}");
    assert_eq!(
        pings_started(&admin),
        before,
        "a refused call reached the service"
    );
    ping(&rt, &grpc, &chart_client.ca(), Some(&chart_client)).expect("the chart's client");
    assert_eq!(pings_started(&admin), before + 1);

    // 3. The recipe's certificates work the same way, and do not mix with the chart's.
    let (_gw2, grpc2, admin2) = gateway(dir, "recipe", &recipe_server);
    ping(&rt, &grpc2, &recipe_client.ca(), Some(&recipe_client)).expect("the recipe's client");
    let e = ping(&rt, &grpc2, &recipe_client.ca(), Some(&chart_client))
        .expect_err("the chart's client at the recipe's gateway");
    eprintln!("chart client at the recipe's gateway: {e}");
    assert_eq!(pings_started(&admin2), 1);

    // The volume-controller's own verdict on its gateway link: the App's VolumesSynced.
    let o = stack.kubectl(&[
        "get",
        "app",
        "app",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"VolumesSynced\")].reason}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Connected",
        "{}",
        controller.log()
    );
}
