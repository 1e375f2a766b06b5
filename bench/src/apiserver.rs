//! API server figures (issue "control plane core"; control-plane.md §12).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(clap::Args)]
pub struct Args {
    /// Objects created for the throughput figure.
    #[arg(long, default_value_t = 4000)]
    creates: usize,
    /// Concurrent clients creating.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Objects stored for the memory and start-up figures.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Watchers for the fan-out latency figure.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Events sent to the watchers.
    #[arg(long, default_value_t = 200)]
    events: usize,
}

struct Server {
    home: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

fn rdd_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("rdd");
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p rdd`",
            p.display()
        );
    }
    Ok(p)
}

impl Server {
    fn new() -> anyhow::Result<Server> {
        Ok(Server {
            home: tempfile::tempdir()?,
            child: None,
            port: 0,
        })
    }

    fn dir(&self) -> PathBuf {
        self.home.path().join(".local/share/rancher-desktop-bench")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir().join("config.yaml")
    }

    /// Start and return the time until `/readyz` answered 200.
    async fn start(&mut self) -> anyhow::Result<Duration> {
        let _ = std::fs::remove_file(self.kubeconfig());
        let t0 = Instant::now();
        let child = Command::new(rdd_binary()?)
            .args([
                "svc",
                "serve",
                "--controllers=",
                "--secure-port",
                &self.port.to_string(),
            ])
            .env("HOME", self.home.path())
            .env("RDD_INSTANCE", "bench")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        self.child = Some(child);
        while !self.kubeconfig().exists() {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("server did not start");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let client = self.client().await?;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            if let Ok(r) = client.send(req.map(kube::client::Body::from)).await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = t0.elapsed();
        let text = std::fs::read_to_string(self.kubeconfig())?;
        let i = text.find("127.0.0.1:").context("no port in kubeconfig")? + 10;
        self.port = text[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()?;
        Ok(elapsed)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn rss_mib(&self) -> f64 {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok(kube::Client::try_from(cfg)?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn payload() -> String {
    "x".repeat(1024)
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("payload".to_string(), payload())].into()),
        ..Default::default()
    }
}

/// One-row-per-transaction inserts into a kine-like table with the server's pragmas.
fn raw_sqlite_rate(n: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("raw.sqlite3"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE kv (rev INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, created INTEGER, deleted INTEGER,
         create_rev INTEGER, prev_rev INTEGER, lease_expires INTEGER, value BLOB, UNIQUE (key, prev_rev));
         CREATE INDEX kv_key_rev ON kv (key, rev);",
    )?;
    let value = serde_json::to_vec(
        &serde_json::json!({"metadata": {"name": "x"}, "data": {"payload": payload()}}),
    )?;
    let t0 = Instant::now();
    for i in 0..n {
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO kv (key, created, deleted, create_rev, prev_rev, value) VALUES (?1, 1, 0, 0, 0, ?2)",
            rusqlite::params![format!("/core/configmaps/default/raw-{i}"), value],
        )?;
        tx.commit()?;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn create_rate(
    client: &kube::Client,
    n: usize,
    clients: usize,
    prefix: &str,
) -> anyhow::Result<f64> {
    let per = n / clients;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                api.create(&PostParams::default(), &cm(&format!("{prefix}-{c}-{i}")))
                    .await?;
            }
            Ok::<_, kube::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((per * clients) as f64 / t0.elapsed().as_secs_f64())
}

/// Open `watchers` raw watch streams on one namespace; write `events` objects one at a time;
/// latency = arrival at each watcher − the moment the create was sent.
async fn watch_latency(
    client: &kube::Client,
    watchers: usize,
    events: usize,
) -> anyhow::Result<(f64, f64)> {
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some("watch".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    ns_api.create(&PostParams::default(), &ns).await?;
    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; events]));
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(watchers * events)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers);
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let client = client.clone();
        let sent = sent.clone();
        let lat = lat.clone();
        let ready = ready_tx.clone();
        handles.push(tokio::spawn(async move {
            let req = http::Request::get(
                "/api/v1/namespaces/watch/configmaps?watch=true&resourceVersion=0",
            )
            .body(Vec::new())?;
            let resp = client.send(req.map(kube::client::Body::from)).await?;
            let _ = ready.send(()).await;
            let mut body = resp.into_body().into_data_stream();
            let mut buf = Vec::new();
            let mut seen = 0;
            while seen < events {
                let Some(chunk) = body.next().await else {
                    break;
                };
                let chunk = chunk?;
                let now = Instant::now();
                buf.extend_from_slice(&chunk);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let v: serde_json::Value = serde_json::from_slice(&line)?;
                    let name = v["object"]["metadata"]["name"].as_str().unwrap_or("");
                    if let Some(idx) = name
                        .strip_prefix("ev-")
                        .and_then(|s| s.parse::<usize>().ok())
                    {
                        if let Some(t) = sent.lock().ok().and_then(|s| s[idx]) {
                            lat.lock()
                                .map_err(|_| anyhow::anyhow!("poisoned"))?
                                .push(now.duration_since(t).as_secs_f64() * 1000.0);
                        }
                        seen += 1;
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for _ in 0..watchers {
        ready_rx.recv().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "watch");
    for i in 0..events {
        if let Ok(mut s) = sent.lock() {
            s[i] = Some(Instant::now());
        }
        api.create(&PostParams::default(), &cm(&format!("ev-{i}")))
            .await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for h in handles {
        tokio::time::timeout(Duration::from_secs(30), h).await???;
    }
    let mut l = lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    l.sort_by(|a, b| a.total_cmp(b));
    Ok((percentile(&l, 0.5), percentile(&l, 0.99)))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut s = Server::new()?;
    let cold = s.start().await?;
    let client = s.client().await?;
    let idle_rss = s.rss_mib();
    // Disk and CPU noise move both figures; interleave three rounds of each and keep medians.
    let mut raws = Vec::new();
    let mut rates = Vec::new();
    for round in 0..3 {
        eprintln!(
            "round {round}: raw SQLite commit rate, then creates with {} clients…",
            a.clients
        );
        raws.push(raw_sqlite_rate(a.creates)?);
        rates.push(create_rate(&client, a.creates / 3, a.clients, &format!("tp{round}")).await?);
    }
    raws.sort_by(|x, y| x.total_cmp(y));
    rates.sort_by(|x, y| x.total_cmp(y));
    let (raw, rate) = (raws[1], rates[1]);
    let created = (a.creates / 3 / a.clients) * a.clients * 3;
    eprintln!("filling to {} objects…", a.objects);
    if a.objects > created {
        create_rate(&client, a.objects - created, a.clients, "fill").await?;
    }
    eprintln!("measuring watch latency with {} watchers…", a.watchers);
    let (p50, p99) = watch_latency(&client, a.watchers, a.events).await?;
    let rss_loaded = s.rss_mib();
    let t0 = Instant::now();
    let req = http::Request::get("/api/v1/configmaps").body(Vec::new())?;
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let bytes = resp.into_body().collect().await?.to_bytes().len();
    let list_time = t0.elapsed();
    s.stop();
    let warm = s.start().await?;
    out!("| figure | value | baseline / goal |");
    out!("|---|---|---|");
    out!(
        "| raw SQLite commits (1 row/txn, WAL, synchronous=NORMAL), median of 3 | {raw:.0}/s | baseline |"
    );
    out!(
        "| create throughput, {} kube-rs clients over HTTPS, 1 KiB ConfigMaps, median of 3 | {rate:.0}/s | **{:.2}×** raw (goal ≥ 0.5×) |",
        a.clients,
        rate / raw
    );
    out!(
        "| watch delivery, {} watchers × {} events | p50 {p50:.2} ms, p99 {p99:.2} ms | goal p99 ≤ 10 ms |",
        a.watchers,
        a.events
    );
    out!("| RSS idle (fresh start) | {idle_rss:.1} MiB | goal ≤ 40 MiB |");
    out!(
        "| RSS with {} objects after {} watchers | {rss_loaded:.1} MiB | goal ≤ 100 MiB |",
        a.objects + a.events,
        a.watchers
    );
    out!(
        "| LIST of all {} ConfigMaps ({} KiB) | {:.0} ms | goal ≤ 1 s |",
        a.objects + a.events,
        bytes / 1024,
        list_time.as_secs_f64() * 1000.0
    );
    out!(
        "| start → /readyz 200, empty | {:.0} ms | goal ≤ 1 s |",
        cold.as_secs_f64() * 1000.0
    );
    out!(
        "| start → /readyz 200, {} objects | {:.0} ms | goal ≤ 1 s |",
        a.objects + a.events,
        warm.as_secs_f64() * 1000.0
    );
    Ok(())
}
