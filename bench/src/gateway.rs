//! `rdd-bench gateway`: the docker-gateway against direct bollard use, in the same run.
//!
//! - Event fan-out: Docker events (volume create/remove) received by a direct bollard
//!   subscriber and by 1, then 10, gateway subscribers; latency = receive time − Docker's
//!   `timeNano` (same host clock). The gateway's overhead is its p99 minus the direct p99.
//! - List + inspect of N containers with 16 requests in flight, through the gateway vs bollard,
//!   medians of interleaved rounds.
//! - The gateway's RSS after those runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};
use futures::StreamExt;
use rdd_proto::DockerGatewayClient;
use rdd_proto::v1::{
    ContainerRef, ListContainersRequest, SubscribeRequest, subscribe_response::Message,
};
use tokio::sync::Mutex;

#[derive(clap::Args)]
pub struct Args {
    /// Events per fan-out phase.
    #[arg(long, default_value_t = 400)]
    events: usize,
    /// Containers for the list + inspect comparison.
    #[arg(long, default_value_t = 1000)]
    pub containers: usize,
    /// Interleaved rounds of list + inspect.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

struct Gw {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway() -> anyhow::Result<Gw> {
    let exe = std::env::current_exe()?
        .parent()
        .context("bench binary directory")?
        .join("docker-gateway");
    if !exe.exists() {
        bail!(
            "{} is missing: cargo build --release -p docker-gateway",
            exe.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("gw.sock");
    let child = Command::new(exe)
        .args([
            "--docker-host",
            "unix:///var/run/docker.sock",
            "--log-level",
            "warn",
        ])
        .arg("--socket")
        .arg(&socket)
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .spawn()?;
    let t = Instant::now();
    while !socket.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("gateway did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Gw {
        child,
        socket,
        _dir: dir,
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

type Lat = Arc<Mutex<HashMap<String, Vec<f64>>>>;

/// One fan-out phase: `subs` gateway subscribers plus one direct subscriber see `n` volume
/// creates; returns (direct latencies, gateway latencies) in ms.
async fn fanout(
    docker: &Docker,
    gw: &Gw,
    subs: usize,
    n: usize,
    tag: &str,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let label = format!("rdd-bench={tag}");
    let lat: Lat = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subs + 1);
    for i in 0..subs {
        let mut c = DockerGatewayClient::new(rdd_proto::unix_channel(&gw.socket));
        let lat = lat.clone();
        let ready = ready_tx.clone();
        let label = label.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c
                .subscribe(SubscribeRequest {
                    types: vec!["volume".into()],
                    actions: vec!["create".into()],
                    label_selector: String::new(),
                    subscriber: format!("bench-{i}"),
                })
                .await?
                .into_inner();
            let mut got = 0;
            while let Some(m) = s.message().await? {
                match m.message {
                    Some(Message::Synced(_)) => {
                        let _ = ready.send(()).await;
                    }
                    Some(Message::Event(e)) => {
                        let recv = now_nanos();
                        if e.actor_id.starts_with(&label.replace('=', "-")) {
                            let t = e
                                .time
                                .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
                                .unwrap_or(recv);
                            lat.lock()
                                .await
                                .entry("gateway".into())
                                .or_default()
                                .push((recv - t) as f64 / 1e6);
                            got += 1;
                            if got == n {
                                return Ok::<(), anyhow::Error>(());
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        }));
    }
    {
        let docker = docker.clone();
        let lat = lat.clone();
        let ready = ready_tx.clone();
        let label = label.clone();
        tasks.push(tokio::spawn(async move {
            let opts = EventsOptions {
                since: None,
                until: None,
                filters: Some(HashMap::from([
                    ("type".to_string(), vec!["volume".to_string()]),
                    ("event".to_string(), vec!["create".to_string()]),
                ])),
            };
            let mut s = docker.events(Some(opts));
            // bollard sends the request on the first poll; give it a moment before declaring
            // the direct subscriber ready.
            let first = tokio::time::timeout(Duration::from_millis(300), s.next()).await;
            let _ = ready.send(()).await;
            let mut got = 0;
            let handle = |e: bollard::models::EventMessage| {
                let recv = now_nanos();
                let id = e.actor.and_then(|a| a.id).unwrap_or_default();
                (
                    id.starts_with(&label.replace('=', "-")),
                    recv - e.time_nano.unwrap_or(recv),
                )
            };
            let mut out = Vec::new();
            if let Ok(Some(Ok(e))) = first {
                let (mine, d) = handle(e);
                if mine {
                    out.push(d as f64 / 1e6);
                    got += 1;
                }
            }
            while got < n {
                match s.next().await {
                    Some(Ok(e)) => {
                        let (mine, d) = handle(e);
                        if mine {
                            out.push(d as f64 / 1e6);
                            got += 1;
                        }
                    }
                    _ => break,
                }
            }
            lat.lock().await.insert("direct".into(), out);
            Ok(())
        }));
    }
    for _ in 0..=subs {
        tokio::time::timeout(Duration::from_secs(20), ready_rx.recv())
            .await
            .context("subscribers ready")?;
    }
    let prefix = label.replace('=', "-");
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let mut labels = HashMap::new();
        labels.insert("rdd-bench".to_string(), tag.to_string());
        docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(name),
                labels: Some(labels),
                ..Default::default()
            })
            .await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .context("subscriber finished")???;
    }
    for i in 0..n {
        let _ = docker
            .remove_volume(
                &format!("{prefix}-{i}"),
                Some(RemoveVolumeOptions { force: true }),
            )
            .await;
    }
    let mut l = lat.lock().await;
    Ok((
        l.remove("direct").unwrap_or_default(),
        l.remove("gateway").unwrap_or_default(),
    ))
}

async fn list_inspect_direct(docker: &Docker, label: &str) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label.to_string()],
            )])),
            ..Default::default()
        }))
        .await?;
    let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    let n = ids.len();
    let results: Vec<_> = futures::stream::iter(ids)
        .map(|id| {
            let d = docker.clone();
            async move {
                d.inspect_container(&id, None::<InspectContainerOptions>)
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok((t.elapsed(), n))
}

async fn list_inspect_gateway(gw: &Gw, label: &str) -> anyhow::Result<(Duration, usize)> {
    let c = DockerGatewayClient::new(rdd_proto::unix_channel(&gw.socket));
    let t = Instant::now();
    let list = c
        .clone()
        .list_containers(ListContainersRequest {
            all: true,
            label: vec![label.to_string()],
        })
        .await?
        .into_inner();
    let ids: Vec<String> = list.containers.into_iter().map(|c| c.id).collect();
    let n = ids.len();
    let results: Vec<_> = futures::stream::iter(ids)
        .map(|id| {
            let mut c = c.clone();
            async move { c.inspect_container(ContainerRef { id }).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok((t.elapsed(), n))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let docker = Docker::connect_with_unix_defaults()?
        .negotiate_version()
        .await?;
    let gw = start_gateway()?;
    let pid = gw.child.id();
    let tag = format!("{}", std::process::id());

    let (mut d1, mut g1) = fanout(&docker, &gw, 1, a.events, &format!("{tag}a")).await?;
    let (mut d10, mut g10) = fanout(&docker, &gw, 10, a.events, &format!("{tag}b")).await?;
    let rss_fanout = rss_kib(pid);

    let image = rdd_testkit::busybox_image();
    let label = format!("rdd-bench={tag}c");
    let created = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..a.containers)
        .map(|i| {
            let d = docker.clone();
            let tag = tag.clone();
            async move {
                let mut labels = HashMap::new();
                labels.insert("rdd-bench".to_string(), format!("{tag}c"));
                d.create_container(
                    Some(CreateContainerOptions {
                        name: Some(format!("rdd-bench-{tag}-{i}")),
                        platform: String::new(),
                    }),
                    bollard::models::ContainerCreateBody {
                        image: Some(image.to_string()),
                        cmd: Some(vec!["true".into()]),
                        labels: Some(labels),
                        ..Default::default()
                    },
                )
                .await
                .map(|r| r.id)
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    eprintln!(
        "created {} containers in {:?}",
        ids.len(),
        created.elapsed()
    );

    let mut direct = Vec::new();
    let mut via = Vec::new();
    let mut result = Ok(());
    for _ in 0..a.rounds {
        match (
            list_inspect_direct(&docker, &label).await,
            list_inspect_gateway(&gw, &label).await,
        ) {
            (Ok((d, n1)), Ok((g, n2))) if n1 == a.containers && n2 == a.containers => {
                direct.push(d.as_secs_f64());
                via.push(g.as_secs_f64());
            }
            (r1, r2) => {
                result = Err(anyhow::anyhow!(
                    "list+inspect round failed: {:?} {:?}",
                    r1.err(),
                    r2.err()
                ));
                break;
            }
        }
    }
    let rss_list = rss_kib(pid);
    let _: Vec<_> = futures::stream::iter(ids)
        .map(|id| {
            let d = docker.clone();
            async move {
                d.remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    result?;

    let (dm, gm) = (pct(&mut direct.clone(), 0.5), pct(&mut via, 0.5));
    out!("| figure | direct bollard | through the gateway | goal |");
    out!("|---|---|---|---|");
    let row = |name: &str, d: &mut Vec<f64>, g: &mut Vec<f64>| {
        let (d50, d99, g50, g99) = (pct(d, 0.5), pct(d, 0.99), pct(g, 0.5), pct(g, 0.99));
        out!(
            "| event latency, {name} (n={}, {}) p50 / p99 | {d50:.2} / {d99:.2} ms | {g50:.2} / {g99:.2} ms (overhead p99 {:+.2} ms) | overhead ≤ 2 ms p99 |",
            d.len(),
            g.len(),
            g99 - d99
        );
    };
    row("1 subscriber", &mut d1, &mut g1);
    row("10 subscribers", &mut d10, &mut g10);
    out!(
        "| list + inspect {} containers (median of {}) | {:.3} s | {:.3} s ({:.2}×) | ≤ 1.2× |",
        a.containers,
        direct.len(),
        dm,
        gm,
        gm / dm
    );
    out!(
        "| gateway RSS after fan-out / after list+inspect | — | {:.1} / {:.1} MiB | ≤ 15 MiB |",
        rss_fanout as f64 / 1024.0,
        rss_list as f64 / 1024.0
    );
    Ok(())
}
