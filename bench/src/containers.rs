//! container-controller figures (issue 7): cold sync of N containers against the raw
//! list+inspect floor measured through bollard in the same run; API writes and Docker calls per
//! Docker event at N = 10, 100, 1000 mirrors; event → mirror visible to a watch (p50/p99); the
//! controller's RSS with N mirrors.
//!
//! Starts `rdd svc serve`, `docker-gateway` (on the real Docker socket) and
//! `container-controller` (the binaries next to this one) in a private HOME. Everything it
//! creates in Docker carries a unique `rdd-bench` label and is removed at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures::StreamExt;
use http_body_util::BodyExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// Containers for the cold sync and the largest event figure.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// pause/unpause transitions per event figure.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Concurrent inspects of the bollard floor (the controller's default sync concurrency).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found: build with `cargo build --release -p rdd -p docker-gateway -p container-controller -p rdd-bench`",
            p.display()
        );
    }
    Ok(p)
}

pub(crate) struct Proc(pub(crate) Child);

impl Proc {
    pub(crate) fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map(|k| k / 1024.0)
            .unwrap_or(0.0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

pub(crate) fn docker_calls(admin: &str) -> u64 {
    http_get(admin, "/metrics")
        .lines()
        .filter(|l| l.starts_with("docker_gateway_docker_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<()> {
    let o = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
        .context("kubectl")?;
    if !o.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

pub(crate) fn app_resource() -> ApiResource {
    ApiResource {
        group: "app.rancherdesktop.io".into(),
        version: "v1alpha1".into(),
        api_version: "app.rancherdesktop.io/v1alpha1".into(),
        kind: "App".into(),
        plural: "apps".into(),
    }
}

fn container_resource() -> ApiResource {
    ApiResource {
        group: "containers.rancherdesktop.io".into(),
        version: "v1alpha1".into(),
        api_version: "containers.rancherdesktop.io/v1alpha1".into(),
        kind: "Container".into(),
        plural: "containers".into(),
    }
}

pub(crate) async fn set_running(apps: &Api<DynamicObject>, running: bool) -> anyhow::Result<()> {
    let app = apps.get("app").await?;
    let status = if running { "True" } else { "False" };
    apps.patch_status(
        "app",
        &PatchParams::apply("bench-app-controller").force(),
        &Patch::Apply(json!({
            "apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
            "status": {"conditions": [{"type": "Running", "status": status, "reason": "Bench",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": app.metadata.generation.unwrap_or(1)}]},
        })),
    )
    .await?;
    Ok(())
}

pub(crate) async fn synced_reason(apps: &Api<DynamicObject>) -> Option<String> {
    let app = apps.get_opt("app").await.ok()??;
    app.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ContainersSynced")
        .and_then(|c| c["reason"].as_str().map(str::to_string))
}

async fn create_containers(
    docker: &Docker,
    label: (&str, &str),
    prefix: &str,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    let image = rdd_testkit::busybox_image();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(from..to)
        .map(|i| async move {
            let body = ContainerCreateBody {
                image: Some(image.to_string()),
                cmd: Some(vec!["true".into()]),
                labels: Some(HashMap::from([(label.0.to_string(), label.1.to_string())])),
                ..Default::default()
            };
            let opts = CreateContainerOptions {
                name: Some(format!("{prefix}-{i}")),
                ..Default::default()
            };
            docker.create_container(Some(opts), body).await?;
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// The floor: list (all, by label) and inspect each with bounded concurrency, through bollard.
async fn floor(docker: &Docker, label: &str, concurrency: usize) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let opts = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![label.to_string()],
        )])),
        ..Default::default()
    };
    let list = docker.list_containers(Some(opts)).await?;
    let n = futures::stream::iter(list)
        .map(|c| async move {
            docker
                .inspect_container(c.id.as_deref().unwrap_or_default(), None)
                .await
        })
        .buffer_unordered(concurrency)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    if n == 0 {
        bail!("floor inspected nothing");
    }
    Ok(t0.elapsed())
}

/// Open a raw watch on `path` and return its line stream as JSON values.
async fn watch(
    client: &kube::Client,
    path: &str,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<(Instant, Value)>> {
    let req = http::Request::get(path).body(Vec::new())?;
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(Ok(f)) = body.frame().await {
            if let Ok(d) = f.into_data() {
                buf.extend_from_slice(&d);
            }
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if let Ok(v) = serde_json::from_slice::<Value>(&line)
                    && tx.send((Instant::now(), v)).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

struct EventFigures {
    writes_per_event: f64,
    docker_per_event: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `events` pause/unpause transitions of `id`: API writes (watch events in NS) and Docker calls
/// (gateway) per Docker event, and the time from the Docker call's return to the watch event
/// that shows the new state.
async fn event_figures(
    docker: &Docker,
    client: &kube::Client,
    ns: &str,
    id: &str,
    gw_admin: &str,
    events: usize,
) -> anyhow::Result<EventFigures> {
    let containers: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &container_resource());
    let rv = containers
        .list(&Default::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let path = format!(
        "/apis/containers.rancherdesktop.io/v1alpha1/namespaces/{ns}/containers?watch=1&resourceVersion={rv}"
    );
    let mut rx = watch(client, &path).await?;
    let calls0 = docker_calls(gw_admin);
    let mut lat = Vec::new();
    let mut writes = 0usize;
    for i in 0..events {
        let want = if i % 2 == 0 { "paused" } else { "running" };
        if i % 2 == 0 {
            docker.pause_container(id).await?;
        } else {
            docker.unpause_container(id).await?;
        }
        let sent = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (at, ev) = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .context("mirror update within 10 s")?
                .context("watch ended")?;
            writes += 1;
            let o = &ev["object"];
            if o["metadata"]["name"] == id && o["status"]["status"] == want {
                lat.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    // Trailing writes of the last event (its conditions) arrive shortly after.
    let quiet = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(_)) = tokio::time::timeout_at(quiet, rx.recv()).await {
        writes += 1;
    }
    let calls = docker_calls(gw_admin) - calls0;
    Ok(EventFigures {
        writes_per_event: writes as f64 / events as f64,
        docker_per_event: calls as f64 / events as f64,
        p50_ms: pct(&mut lat.clone(), 0.5),
        p99_ms: pct(&mut lat, 0.99),
    })
}

async fn wait_mirrors(client: &kube::Client, ns: &str, n: usize) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &container_resource());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let l = api.list(&Default::default()).await?;
        if l.items.len() == n
            && l.items
                .iter()
                .all(|o| o.data["status"]["status"].is_string())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} of {n} mirrors", l.items.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    run_inner(&a).await
}

async fn run_inner(a: &Args) -> anyhow::Result<()> {
    let rdd = sibling("rdd")?;
    let gw_bin = sibling("docker-gateway")?;
    let ctrl_bin = sibling("container-controller")?;
    let docker = Docker::connect_with_unix_defaults()?;
    let id = format!(
        "{}{}",
        std::process::id(),
        Instant::now().elapsed().subsec_nanos()
    );
    let label_kv = ("rdd-bench", id.as_str());
    let label = format!("rdd-bench={id}");
    let cleanup = Cleanup {
        docker: docker.clone(),
        label: label.clone(),
    };
    let home = tempfile::tempdir()?;
    let _server = Proc(
        Command::new(&rdd)
            .args(["svc", "serve", "--secure-port", "0", "--controllers="])
            .env("HOME", home.path())
            .env("RDD_INSTANCE", "bench")
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let kubeconfig = home
        .path()
        .join(".local/share/rancher-desktop-bench/config.yaml");
    let t0 = Instant::now();
    while !kubeconfig.exists() {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("rdd svc serve did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
    )?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for d in ["deploy/crds", "deploy/admission"] {
        kubectl(
            home.path(),
            &kubeconfig,
            &["apply", "-f", root.join(d).to_str().unwrap_or("")],
        )?;
    }
    kubectl(
        home.path(),
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
    )?;
    let ctrl_kc = home.path().join("container-controller.yaml");
    let o = Command::new(&rdd)
        .args([
            "svc",
            "token",
            "create",
            "--controller",
            "container-controller",
            "--kubeconfig",
        ])
        .arg(&ctrl_kc)
        .env("HOME", home.path())
        .env("RDD_INSTANCE", "bench")
        .output()?;
    if !o.status.success() {
        bail!("token: {}", String::from_utf8_lossy(&o.stderr));
    }
    let apps: Api<DynamicObject> = Api::all_with(client.clone(), &app_resource());
    let make_app = |ns: &str| -> anyhow::Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
            "metadata": {"name": "app"},
            "spec": {"running": true, "namespace": ns, "containerEngine": {"name": "moby"}},
        }))?)
    };
    let gw_socket = home.path().join("gateway.sock");
    let gw_admin = format!("127.0.0.1:{}", free_port()?);
    let _gateway = Proc(
        Command::new(gw_bin)
            .args(["--docker-host", "unix:///var/run/docker.sock"])
            .arg("--socket")
            .arg(&gw_socket)
            .args(["--admin-addr", &gw_admin])
            .env("HOME", home.path())
            .env("RDD_LOG_LEVEL", "warn")
            .env("RDD_SUBSCRIBER_BUFFER", "8192")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    while !gw_socket.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Phase 1: event figures at N = 10, 100, 1000 (mirrors grow through the event path).
    kubectl(
        home.path(),
        &kubeconfig,
        &["create", "namespace", "bench-a"],
    )?;
    apps.create(&PostParams::default(), &make_app("bench-a")?)
        .await?;
    set_running(&apps, true).await?;
    // The container the events are made on, running.
    let body = ContainerCreateBody {
        image: Some(rdd_testkit::busybox_image().to_string()),
        cmd: Some(vec!["sleep".into(), "100000".into()]),
        labels: Some(HashMap::from([(
            label_kv.0.to_string(),
            label_kv.1.to_string(),
        )])),
        ..Default::default()
    };
    let ev_id = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(format!("rdd-bench-{id}-events")),
                ..Default::default()
            }),
            body,
        )
        .await?
        .id;
    docker.start_container(&ev_id, None).await?;
    create_containers(&docker, label_kv, &format!("rdd-bench-{id}"), 0, 9).await?;
    let ctrl_admin = format!("127.0.0.1:{}", free_port()?);
    let controller = Proc(
        Command::new(&ctrl_bin)
            .env("HOME", home.path())
            .env("RDD_INSTANCE", "bench")
            .env("RDD_KUBECONFIG", &ctrl_kc)
            .env("RDD_GATEWAY_SOCKET", &gw_socket)
            .env("RDD_LABEL_SELECTOR", &label)
            .env("RDD_ADMIN_ADDR", &ctrl_admin)
            .env("RDD_SWEEP_WAIT_SECONDS", "120")
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let mut rows = Vec::new();
    let mut sizes = vec![10usize, 100, a.n];
    sizes.dedup();
    let mut have = 10usize;
    let mut rss_at_n = 0.0;
    for &n in &sizes {
        if n > have {
            create_containers(
                &docker,
                label_kv,
                &format!("rdd-bench-{id}"),
                have - 1,
                n - 1,
            )
            .await?;
            have = n;
        }
        wait_mirrors(&client, "bench-a", n).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let f = event_figures(&docker, &client, "bench-a", &ev_id, &gw_admin, a.events).await?;
        eprintln!(
            "N={n}: {:.2} API writes/event, {:.2} Docker calls/event, p50 {:.1} ms, p99 {:.1} ms",
            f.writes_per_event, f.docker_per_event, f.p50_ms, f.p99_ms
        );
        if n == a.n {
            rss_at_n = controller.rss_mib();
        }
        rows.push((n, f));
    }

    // Phase 2: the floor, then a cold sync of the same N containers into an empty namespace
    // (the App is recreated with a new namespace; the old one is swept first).
    let mut floors = Vec::new();
    for _ in 0..3 {
        floors.push(floor(&docker, &label, a.concurrency).await?.as_secs_f64());
    }
    let floor_s = pct(&mut floors, 0.5);
    apps.delete("app", &Default::default()).await?;
    let containers_a: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "bench-a", &container_resource());
    let deadline = Instant::now() + Duration::from_secs(300);
    while !containers_a
        .list(&Default::default())
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("sweep of bench-a did not finish");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kubectl(
        home.path(),
        &kubeconfig,
        &["create", "namespace", "bench-b"],
    )?;
    apps.create(&PostParams::default(), &make_app("bench-b")?)
        .await?;
    let t = Instant::now();
    set_running(&apps, true).await?;
    loop {
        if synced_reason(&apps).await.as_deref() == Some("Connected") {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("cold sync did not finish");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cold_s = t.elapsed().as_secs_f64();
    wait_mirrors(&client, "bench-b", a.n).await?;
    let rss_cold = controller.rss_mib();

    out!("| figure | value | baseline / goal |");
    out!("|---|---|---|");
    out!(
        "| raw list + inspect of {} containers through bollard, concurrency {}, median of 3 | {:.0} ms | baseline |",
        a.n,
        a.concurrency,
        floor_s * 1000.0
    );
    out!(
        "| cold sync of {} containers (Running=True written → ContainersSynced=Connected) | {:.0} ms | **{:.1}×** floor (goal ≤ 1.5×) |",
        a.n,
        cold_s * 1000.0,
        cold_s / floor_s
    );
    for (n, f) in &rows {
        out!(
            "| per Docker event at N={n} (pause/unpause × {}) | {:.2} API writes, {:.2} Docker calls | goal: constant in N |",
            a.events,
            f.writes_per_event,
            f.docker_per_event
        );
    }
    for (n, f) in &rows {
        out!(
            "| event → mirror visible to a watch, N={n} | p50 {:.1} ms, p99 {:.1} ms | goal p99 ≤ 50 ms at N=1000 |",
            f.p50_ms,
            f.p99_ms
        );
    }
    out!(
        "| controller RSS with {} mirrors (after the event figures / after the cold sync) | {:.1} MiB / {:.1} MiB | goal ≤ 20 MiB |",
        a.n,
        rss_at_n,
        rss_cold
    );
    drop(controller);
    drop(cleanup);
    Ok(())
}

/// Removes every container of the run (by label) when dropped.
struct Cleanup {
    docker: Docker,
    label: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let label = self.label.clone();
        let h = tokio::runtime::Handle::current();
        let _ = std::thread::spawn(move || {
            h.block_on(async move {
                let opts = ListContainersOptions {
                    all: true,
                    filters: Some(HashMap::from([("label".to_string(), vec![label])])),
                    ..Default::default()
                };
                let Ok(list) = docker.list_containers(Some(opts)).await else {
                    return;
                };
                futures::stream::iter(list)
                    .for_each_concurrent(8, |c| {
                        let docker = docker.clone();
                        async move {
                            let _ = docker
                                .remove_container(
                                    c.id.as_deref().unwrap_or_default(),
                                    Some(RemoveContainerOptions {
                                        force: true,
                                        ..Default::default()
                                    }),
                                )
                                .await;
                        }
                    })
                    .await;
            })
        })
        .join();
    }
}
