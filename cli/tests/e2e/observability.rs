//! Observability end to end (docs/observability.md): the whole desktop stack under `rdd svc`
//! (gateway, the five controllers, the App brought up through the limactl stand-in) scraped by a
//! real Prometheus, and its traces received over OTLP.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::repo_root;

pub const CONTROLLERS: [&str; 5] = [
    "container-controller",
    "image-controller",
    "volume-controller",
    "app-controller",
    "limavm-controller",
];

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_rdd"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A started desktop stack: `rdd svc start` then `rdd start`, mirroring this test's objects.
pub struct Stack {
    pub home: tempfile::TempDir,
    pub name: String,
    pub scope: rdd_testkit::Scope,
    envs: Vec<(String, String)>,
}

impl Stack {
    /// Start with extra environment for the control plane and its children.
    pub fn start(envs: &[(&str, &str)]) -> Stack {
        for b in ["limactl-standin", "docker-gateway"]
            .iter()
            .chain(CONTROLLERS.iter())
        {
            assert!(
                bin_dir().join(b).exists(),
                "{b} missing: build the workspace (cargo build --workspace --bins)"
            );
        }
        let s = Stack {
            home: tempfile::tempdir().unwrap(),
            name: format!("o{}", rand::random::<u32>() % 100_000),
            scope: rdd_testkit::Scope::new(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let o = s.rdd(&["svc", "start"]);
        assert!(o.status.success(), "svc start: {}", stderr(&o));
        s
    }

    /// `rdd start`: the App up through the limactl stand-in, whose Docker is this machine's.
    pub fn start_app(&self) {
        let o = self.rdd(&["start", "--timeout=120s"]);
        assert!(o.status.success(), "rdd start: {}", stderr(&o));
    }

    pub fn rdd(&self, args: &[&str]) -> Output {
        let images = format!(
            "file://{}",
            repo_root().join("testkit/fixtures/images").display()
        );
        Command::new(env!("CARGO_BIN_EXE_rdd"))
            .args(args)
            .env("HOME", self.home.path())
            .env("RDD_INSTANCE", &self.name)
            .env("RDD_LOG_LEVEL", "warn")
            .env("RDD_LIMACTL", bin_dir().join("limactl-standin"))
            .env("RDD_IMAGE_BASE_URL", images)
            // The mirror controllers mirror only this test's objects.
            .env("RDD_LABEL_SELECTOR", self.scope.label())
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    pub fn dir(&self) -> PathBuf {
        self.home
            .path()
            .join(format!(".local/share/rancher-desktop-{}", self.name))
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("config.yaml")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .unwrap()
    }

    /// The admin address of each supervised child, from `children.json`.
    pub fn admin_addrs(&self) -> Vec<(String, String)> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir().join("children.json")).unwrap())
                .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|c| {
                Some((
                    c["name"].as_str()?.to_string(),
                    c["admin_addr"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// The API server's address and the admin kubeconfig's CA, client certificate and key,
    /// written as files under `dir` (for Prometheus' `tls_config`).
    pub fn api_tls(&self, dir: &Path) -> (String, PathBuf, PathBuf, PathBuf) {
        use base64::Engine;
        let kc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.kubeconfig()).unwrap()).unwrap();
        let server = kc["clusters"][0]["cluster"]["server"].as_str().unwrap();
        let addr = server.trim_start_matches("https://").to_string();
        let mut files = Vec::new();
        for (key, file, section) in [
            ("certificate-authority-data", "ca.crt", "clusters"),
            ("client-certificate-data", "client.crt", "users"),
            ("client-key-data", "client.key", "users"),
        ] {
            let inner = if section == "clusters" {
                "cluster"
            } else {
                "user"
            };
            let b64 = kc[section][0][inner][key].as_str().unwrap();
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let path = dir.join(file);
            std::fs::write(&path, pem).unwrap();
            files.push(path);
        }
        (addr, files[0].clone(), files[1].clone(), files[2].clone())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.rdd(&["stop", "--timeout=60s"]);
        let _ = self.rdd(&["svc", "stop", "--timeout=30s"]);
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET (no chunking to undo); returns status and body.
pub fn http_get(addr: &str, path_and_query: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Debian's `prometheus`, started with a generated configuration scraping `jobs` every second.
pub struct Prometheus {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// `plain`: (job, targets) scraped over HTTP; `api`: the API server over mutual TLS.
    pub fn start(plain: &[(String, Vec<String>)], api: &Stack) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let (api_addr, ca, cert, key) = api.api_tls(dir.path());
        let mut cfg =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for (job, targets) in plain {
            let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            cfg.push_str(&format!(
                "  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        cfg.push_str(&format!(
            "  - job_name: 'rdd-apiserver'\n    scheme: https\n    tls_config:\n      ca_file: '{}'\n      cert_file: '{}'\n      key_file: '{}'\n    static_configs:\n      - targets: ['{api_addr}']\n",
            ca.display(),
            cert.display(),
            key.display()
        ));
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, &cfg).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus (Debian package `prometheus`)");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        wait_for("prometheus to be ready", 60, || {
            http_get(&p.addr, "/-/ready").is_some_and(|(c, _)| c == 200)
        });
        p
    }

    /// Run an instant PromQL query; returns the `data.result` vector.
    pub fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let Some((200, body)) =
            http_get(&self.addr, &format!("/api/v1/query?query={}", urlencode(q)))
        else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Every metric name Prometheus has scraped.
    pub fn names(&self) -> Vec<String> {
        let Some((200, body)) = http_get(&self.addr, "/api/v1/label/__name__/values") else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `job` → `instance` → `up` value, for each scrape target.
    pub fn targets_up(&self) -> Vec<(String, String, String)> {
        self.query("up")
            .iter()
            .map(|r| {
                (
                    r["metric"]["job"].as_str().unwrap_or_default().to_string(),
                    r["metric"]["instance"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    r["value"][1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// The scrape jobs of a stack: one per supervised process, on its admin endpoint.
pub fn jobs(stack: &Stack) -> Vec<(String, Vec<String>)> {
    stack
        .admin_addrs()
        .into_iter()
        .map(|(name, addr)| (name, vec![addr]))
        .collect()
}

/// Every process under `rdd svc` is scraped by a real Prometheus; PromQL over
/// `controller_runtime_reconcile_total` shows all five controllers reconciling, the workqueue,
/// gateway and API server families are there.
#[test]
fn obs_prometheus_scrapes_every_process_and_sees_all_five_controllers_reconcile() {
    let stack = Stack::start(&[]);
    let id = stack.scope.container("scraped", true, &["sleep", "300"]);
    stack.scope.image(&["scraped"]);
    stack.scope.volume("scraped");
    stack.start_app();
    wait_for("the container's mirror", 60, || {
        let o = stack.kubectl(&["get", "containers", "-A", "-o", "name"]);
        String::from_utf8_lossy(&o.stdout).contains(&id)
    });
    let jobs = jobs(&stack);
    let names: Vec<&str> = jobs.iter().map(|(j, _)| j.as_str()).collect();
    for want in CONTROLLERS.iter().chain(["docker-gateway"].iter()) {
        assert!(names.contains(want), "{want} supervised: {names:?}");
    }
    let prom = Prometheus::start(&jobs, &stack);
    wait_for("every target up", 60, || {
        let up = prom.targets_up();
        up.len() == jobs.len() + 1 && up.iter().all(|(_, _, v)| v == "1")
    });
    let mut reconciling = Vec::new();
    wait_for(
        "all five controllers in controller_runtime_reconcile_total",
        60,
        || {
            reconciling = prom
                .query("sum by (job, controller) (controller_runtime_reconcile_total) > 0")
                .iter()
                .map(|r| r["metric"]["job"].as_str().unwrap_or_default().to_string())
                .collect();
            CONTROLLERS
                .iter()
                .all(|c| reconciling.iter().any(|j| j == c))
        },
    );
    // The controller label is the runner's name, one per controller process.
    let by_controller = prom.query("count by (controller) (controller_runtime_reconcile_total)");
    let mut labels: Vec<String> = by_controller
        .iter()
        .filter_map(|r| r["metric"]["controller"].as_str().map(str::to_string))
        .collect();
    labels.sort();
    assert_eq!(labels, ["app", "container", "image", "limavm", "volume"]);
    let names = prom.names();
    for family in [
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds_bucket",
        "workqueue_depth",
        "workqueue_adds_total",
        "workqueue_queue_duration_seconds_bucket",
        "rest_client_requests_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "docker_gateway_docker_request_duration_seconds_bucket",
        "docker_gateway_subscribers",
        "docker_gateway_connected",
        "apiserver_request_total",
        "apiserver_request_duration_seconds_bucket",
        "apiserver_registered_watchers",
        "apiserver_storage_size_bytes",
    ] {
        assert!(
            names.iter().any(|n| n == family),
            "{family} scraped: {names:?}"
        );
    }
    // Values that say the processes work: the gateway is connected and serving its
    // subscribers, the mirror controllers' watches are registered, the database has a size.
    let one = |q: &str| -> f64 {
        prom.query(q)
            .first()
            .and_then(|r| r["value"][1].as_str().and_then(|v| v.parse().ok()))
            .unwrap_or(f64::NAN)
    };
    assert_eq!(one("docker_gateway_connected"), 1.0);
    assert!(one("docker_gateway_subscribers") >= 3.0);
    assert!(one("sum(workqueue_adds_total)") > 0.0);
    assert!(one("sum(apiserver_registered_watchers)") >= 5.0);
    assert!(one("apiserver_storage_size_bytes") > 0.0);
    assert!(one("sum(apiserver_request_total{verb=\"APPLY\"})") > 0.0);
    // The dashboards reference only what was scraped here.
    crate::dashboards::check_against(&prom);
}

use rdd_testkit::otlp::ReceivedSpan;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(s: &ReceivedSpan, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    s.span
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

/// The spans of one trace, if they form one tree: a single root, every other span's parent in
/// the trace.
fn tree(spans: &[ReceivedSpan], trace: &[u8]) -> Option<Vec<ReceivedSpan>> {
    let t: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.span.trace_id == trace)
        .cloned()
        .collect();
    let ids: Vec<&Vec<u8>> = t.iter().map(|s| &s.span.span_id).collect();
    let roots = t
        .iter()
        .filter(|s| s.span.parent_span_id.is_empty())
        .count();
    let orphans = t
        .iter()
        .filter(|s| !s.span.parent_span_id.is_empty() && !ids.contains(&&s.span.parent_span_id))
        .count();
    (roots == 1 && orphans == 0).then_some(t)
}

fn parent<'a>(t: &'a [ReceivedSpan], s: &ReceivedSpan) -> Option<&'a ReceivedSpan> {
    t.iter().find(|p| p.span.span_id == s.span.parent_span_id)
}

/// In trace `t`: a span of `service` named `name` whose parent is a span of `parent_service`.
fn child_of(t: &[ReceivedSpan], service: &str, name: Option<&str>, parent_service: &str) -> bool {
    t.iter().any(|s| {
        s.service == service
            && name.is_none_or(|n| s.span.name == n)
            && parent(t, s).is_some_and(|p| p.service == parent_service)
    })
}

fn describe(t: &[ReceivedSpan]) -> String {
    t.iter()
        .map(|s| {
            format!(
                "{}:{}({})<-{}",
                s.service,
                s.span.name,
                &hex(&s.span.span_id)[..6],
                hex(&s.span.parent_span_id).get(..6).unwrap_or("root")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The trace acceptance of issue 11: `docker stop` of a mirrored container, and separately the
/// `containers.rancherdesktop.io/action=stop` annotation, each yield one trace with spans from
/// the gateway, the container-controller and the API server, parented as the calls were made.
#[test]
fn obs_docker_stop_and_the_stop_action_each_yield_one_trace_across_three_processes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let otlp = rt.block_on(rdd_testkit::otlp::OtlpReceiver::start());
    let stack = Stack::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let stopped = stack.scope.container("stopped", true, &["sleep", "300"]);
    let acted = stack.scope.container("acted", true, &["sleep", "300"]);
    stack.start_app();
    let mirror = |id: &str| -> Option<(String, String)> {
        let o = stack.kubectl(&["get", "containers", "-A", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        v["items"].as_array()?.iter().find_map(|c| {
            // A mirror is named by its Docker ID.
            (c["metadata"]["name"].as_str() == Some(id)).then(|| {
                (
                    c["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    c["metadata"]["name"].as_str().unwrap_or_default().into(),
                )
            })
        })
    };
    wait_for("both mirrors", 90, || {
        mirror(&stopped).is_some() && mirror(&acted).is_some()
    });

    // 1. docker stop: the gateway's span for a Docker event of the container is the root; the
    // container-controller's handling is its child; its inspect (gateway) and its status write
    // (API server) are children of the controller's spans.
    rdd_testkit::docker(&["stop", "-t", "1", &stopped]);
    let mut last = String::new();
    wait_for(
        "a docker-stop trace across gateway, controller and API server",
        60,
        || {
            let spans = otlp.spans();
            let roots: Vec<Vec<u8>> = spans
                .iter()
                .filter(|s| {
                    s.service == "docker-gateway"
                        && s.span.name == "docker.event"
                        && attr(s, "docker.id").as_deref() == Some(stopped.as_str())
                })
                .map(|s| s.span.trace_id.clone())
                .collect();
            roots.iter().any(|trace| {
                let Some(t) = tree(&spans, trace) else {
                    return false;
                };
                last = describe(&t);
                let root_ok = t.iter().any(|s| {
                    s.span.parent_span_id.is_empty()
                        && s.service == "docker-gateway"
                        && s.span.name == "docker.event"
                });
                root_ok
                    && child_of(
                        &t,
                        "container-controller",
                        Some("mirror.event"),
                        "docker-gateway",
                    )
                    && child_of(
                        &t,
                        "docker-gateway",
                        Some("InspectContainer"),
                        "container-controller",
                    )
                    && child_of(&t, "rdd-apiserver", None, "container-controller")
            })
        },
    );
    eprintln!("docker stop trace: {last}");

    // 2. The stop action: the controller's reconcile of the annotated mirror is the root; its
    // StopContainer call (gateway) and its writes (API server) are its descendants.
    let (ns, name) = mirror(&acted).unwrap();
    let o = stack.kubectl(&[
        "annotate",
        "containers",
        "-n",
        &ns,
        &name,
        "containers.rancherdesktop.io/action=stop",
    ]);
    assert!(o.status.success(), "annotate: {}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let spans = otlp.spans();
        let roots: Vec<Vec<u8>> = spans
            .iter()
            .filter(|s| {
                s.service == "container-controller"
                    && s.span.name == "reconcile"
                    && attr(s, "name").as_deref() == Some(name.as_str())
            })
            .map(|s| s.span.trace_id.clone())
            .collect();
        let ok = roots.iter().any(|trace| {
            let Some(t) = tree(&spans, trace) else {
                return false;
            };
            last = describe(&t);
            // The root is kube-runtime's `reconciling object` span around the kit's `reconcile`.
            let root_ok = t
                .iter()
                .any(|s| s.span.parent_span_id.is_empty() && s.service == "container-controller");
            root_ok
                && child_of(
                    &t,
                    "docker-gateway",
                    Some("StopContainer"),
                    "container-controller",
                )
                && t.iter().any(|s| {
                    s.service == "rdd-apiserver"
                        && attr(s, "k8s.verb")
                            .is_some_and(|v| v == "PATCH" || v == "APPLY" || v == "PUT")
                        && parent(&t, s).is_some_and(|p| p.service == "container-controller")
                })
        });
        if ok {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !found {
        let spans = otlp.spans();
        let mut traces: Vec<Vec<u8>> = spans
            .iter()
            .filter(|s| s.service == "container-controller" && s.span.name == "reconcile")
            .map(|s| s.span.trace_id.clone())
            .collect();
        traces.dedup();
        let all: Vec<String> = traces
            .iter()
            .map(|t| {
                let ss: Vec<ReceivedSpan> = spans
                    .iter()
                    .filter(|s| &s.span.trace_id == t)
                    .cloned()
                    .collect();
                describe(&ss)
            })
            .collect();
        panic!(
            "no action trace for {name}; reconcile traces:\n{}",
            all.join("\n")
        );
    }
    eprintln!("action trace: {last}");
    assert_eq!(
        rdd_testkit::docker(&["inspect", "-f", "{{.State.Running}}", &acted]),
        "false"
    );
}
