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

pub fn bin_dir() -> PathBuf {
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
        Stack::start_with(&["svc", "start"], envs)
    }

    /// Start with these `rdd` arguments (`svc start …`) and extra environment.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Stack {
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
        let o = s.rdd(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
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

pub fn free_port() -> u16 {
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

/// The API server's service name in the trace test: `OTEL_SERVICE_NAME` given to `rdd svc
/// start` names the API server's spans, while the supervisor keeps it from the children, which
/// export under their own names.
const API: &str = "rdd-desktop-api";

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
        ("OTEL_SERVICE_NAME", API),
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
                    // The engine call names its object like the event does.
                    && t.iter().any(|s| {
                        s.span.name == "InspectContainer"
                            && attr(s, "docker.id").as_deref() == Some(stopped.as_str())
                    })
                    && child_of(&t, API, None, "container-controller")
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
                    s.span.name == "StopContainer"
                        && attr(s, "docker.id").as_deref() == Some(acted.as_str())
                })
                && t.iter().any(|s| {
                    s.service == API
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
    // Every process's spans under its own name: the API server's renamed, the children's not.
    let services: std::collections::BTreeSet<String> =
        otlp.spans().into_iter().map(|s| s.service).collect();
    for want in [
        API,
        "docker-gateway",
        "container-controller",
        "app-controller",
    ] {
        assert!(services.contains(want), "{want} exported: {services:?}");
    }
    assert!(
        services
            .iter()
            .all(|s| s == API || s == "docker-gateway" || CONTROLLERS.contains(&s.as_str())),
        "{services:?}"
    );
    assert_eq!(
        rdd_testkit::docker(&["inspect", "-f", "{{.State.Running}}", &acted]),
        "false"
    );
}

/// Spans of `receiver` named `name`, once their count has stopped growing for a second (the
/// processes export every 100 ms).
fn settled(receiver: &rdd_testkit::otlp::OtlpReceiver, name: &str) -> Vec<ReceivedSpan> {
    let count = || {
        receiver
            .spans()
            .into_iter()
            .filter(|s| s.span.name == name)
            .count()
    };
    let mut last = count();
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stable_since.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    receiver
        .spans()
        .into_iter()
        .filter(|s| s.span.name == name)
        .collect()
}

/// The standard OpenTelemetry variables, as the SDK specification defines them, on the gateway
/// (`rdd_process::telemetry::init`, as every controller) and on the API server (`rdd svc
/// serve`, `otlp_layer`): `OTEL_SERVICE_NAME` renames the process's spans;
/// `OTEL_TRACES_SAMPLER=always_off` exports nothing while the same work under
/// `traceidratio`/`OTEL_TRACES_SAMPLER_ARG=1` exports every call; `traceidratio` with `0.5`
/// exports about half of 200 independent calls. One OTLP receiver per process, so a span under
/// an unexpected name still counts.
#[test]
fn obs_otel_service_name_and_traces_sampler_are_honoured_by_the_gateway_and_the_api_server() {
    use crate::gateway_tls::Proc;
    use rdd_testkit::otlp::OtlpReceiver;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let gateway = |name: &str, envs: &[(&str, &str)]| -> (Proc, OtlpReceiver, PathBuf) {
        let otlp = rt.block_on(OtlpReceiver::start());
        let socket = tmp.path().join(format!("{name}.sock"));
        let mut cmd = Command::new(bin_dir().join("docker-gateway"));
        cmd.env("HOME", tmp.path())
            .env("RDD_INSTANCE", format!("otel-{name}"))
            .env("RDD_LOG_LEVEL", "warn")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_TRACES_SAMPLER")
            .env_remove("OTEL_TRACES_SAMPLER_ARG")
            .envs(envs.iter().copied())
            .args(["--docker-host", "unix:///var/run/docker.sock"])
            .arg("--socket")
            .arg(&socket);
        let p = Proc::spawn(&mut cmd, tmp.path().join(format!("{name}.log")));
        wait_for(&format!("gateway {name}'s socket"), 20, || socket.exists());
        (p, otlp, socket)
    };
    let ping = |socket: &Path, n: usize| {
        rt.block_on(async {
            let mut gw = rdd_mirror::gateway::connect(socket);
            for _ in 0..n {
                gw.ping(rdd_proto::v1::PingRequest {})
                    .await
                    .expect("ping the gateway");
            }
        })
    };

    let (_on, on, on_sock) = gateway(
        "on",
        &[
            ("OTEL_SERVICE_NAME", "gw-renamed"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ],
    );
    let (_off, off, off_sock) = gateway("off", &[("OTEL_TRACES_SAMPLER", "always_off")]);
    let (_half, half, half_sock) = gateway(
        "half",
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ],
    );
    ping(&on_sock, 20);
    ping(&off_sock, 20);
    ping(&half_sock, 200);

    wait_for("20 Ping spans from the always-sampling gateway", 30, || {
        on.spans().iter().filter(|s| s.span.name == "Ping").count() >= 20
    });
    let services: std::collections::BTreeSet<String> =
        on.spans().into_iter().map(|s| s.service).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        ["gw-renamed"],
        "OTEL_SERVICE_NAME names every span of the process"
    );
    let halved = settled(&half, "Ping");
    let traces: std::collections::BTreeSet<Vec<u8>> =
        halved.iter().map(|s| s.span.trace_id.clone()).collect();
    assert_eq!(traces.len(), halved.len(), "one trace per call");
    eprintln!("traceidratio 0.5 kept {} of 200 calls", halved.len());
    // Binomial(200, 0.5): 60..=140 is more than five standard deviations either side.
    assert!(
        (60..=140).contains(&halved.len()),
        "traceidratio 0.5 kept {} of 200 calls",
        halved.len()
    );
    assert!(halved.iter().all(|s| s.service == "docker-gateway"));
    // By now the gateways have had well over ten export periods.
    assert!(
        off.spans().is_empty(),
        "always_off exported {:?}",
        off.spans().iter().map(|s| &s.span.name).collect::<Vec<_>>()
    );

    // The API server: the same work (kubectl requests) under each sampler.
    let api = |envs: &[(&str, &str)]| -> (crate::harness::Server, OtlpReceiver) {
        let otlp = rt.block_on(OtlpReceiver::start());
        let mut all = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        all.extend(envs.iter().copied());
        (crate::harness::Server::start_with_env(&[], &all), otlp)
    };
    // Its own name here (renamed under `rdd svc start` in the trace test below).
    let (api_on, api_on_otlp) = api(&[("OTEL_TRACES_SAMPLER", "always_on")]);
    let (api_off, api_off_otlp) = api(&[("OTEL_TRACES_SAMPLER", "always_off")]);
    for s in [&api_on, &api_off] {
        for _ in 0..5 {
            s.ok(
                Path::new(crate::harness::KUBECTL_OLD),
                &["get", "namespaces", "-o", "name"],
            );
        }
    }
    wait_for("the API server's LIST namespaces spans", 30, || {
        api_on_otlp
            .spans()
            .iter()
            .filter(|s| s.span.name == "LIST namespaces")
            .count()
            >= 5
    });
    let services: std::collections::BTreeSet<String> =
        api_on_otlp.spans().into_iter().map(|s| s.service).collect();
    assert_eq!(services.into_iter().collect::<Vec<_>>(), ["rdd-apiserver"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        api_off_otlp.spans().is_empty(),
        "always_off exported {:?}",
        api_off_otlp
            .spans()
            .iter()
            .map(|s| &s.span.name)
            .collect::<Vec<_>>()
    );
}
