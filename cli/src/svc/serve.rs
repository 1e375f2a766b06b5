//! `rdd svc serve`: the API server in the foreground, until SIGINT or SIGTERM.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;

use anyhow::Context;
use clap::Args;

use rdd_process::instance::Instance;

// Saved args.json flags come first and `rdd svc start` appends overrides: the last one wins.
#[derive(Args, Debug)]
#[command(args_override_self = true)]
pub struct ServeArgs {
    /// Port of the API server; when busy, a free port is taken (the kubeconfig always names the bound one).
    #[arg(long = "secure-port")]
    pub secure_port: Option<u16>,
    /// Controllers to run (`*`, names or groups, `-x` excludes); recorded for the supervisor.
    #[arg(long, default_value = "*")]
    pub controllers: String,
    /// `normal` survives process crashes (SQLite synchronous=NORMAL); `full` also power loss.
    #[arg(long = "storage-sync", default_value = "normal", value_parser = ["normal", "full"])]
    pub storage_sync: String,
    /// Klog-style verbosity, accepted for compatibility with saved args.
    #[arg(short = 'v', default_value = "0")]
    pub verbosity: String,
    /// Serve only legacy discovery (test switch).
    #[arg(long, hide = true)]
    pub disable_aggregated_discovery: bool,
    /// Refuse watch `sendInitialEvents` with 422 (test switch).
    #[arg(long, hide = true)]
    pub reject_send_initial_events: bool,
    /// Seconds between history compactions (test switch).
    #[arg(long, hide = true, default_value_t = 300)]
    pub compaction_interval_seconds: u64,
    /// Newest revisions every compaction keeps (test switch).
    #[arg(long, hide = true, default_value_t = 1000)]
    pub compaction_keep_revisions: i64,
    /// Milliseconds the garbage collector waits before a pass (test switch).
    #[arg(long, hide = true, default_value_t = 100)]
    pub gc_delay_ms: u64,
    /// Log level handed to the supervised processes (RDD_LOG_LEVEL).
    #[arg(long = "child-log-level", default_value = "info")]
    pub child_log_level: String,
    /// Maximum concurrent non-watch requests; more get 429.
    #[arg(long = "max-requests-inflight", default_value_t = 400)]
    pub max_inflight: usize,
}

pub async fn run(inst: Instance, a: ServeArgs) -> anyhow::Result<i32> {
    // `rdd` restores SIGPIPE's default for pipelines (`rdd svc status | head`); a server must not
    // die of it: a client that goes away while the server writes to its TLS connection (vectored
    // writes carry no MSG_NOSIGNAL) killed the API server (fault suite, kill -9 of a controller).
    // SAFETY: sigaction is process-wide and async-signal-safe; ignoring SIGPIPE turns the signal
    // into EPIPE on the write, which the connection already handles.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let dir = inst.dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| dir.display().to_string())?;
    // Held for the life of the process; the kernel releases it however the process ends.
    let _lock = match rdd_process::lock::acquire(&dir.join("rdd.lock"), "control plane") {
        Ok(l) => l,
        Err(rdd_process::ProcessError::Locked(_)) => {
            anyhow::bail!("control plane {:?} is already running", inst.name())
        }
        Err(e) => return Err(e.into()),
    };
    let args_file = dir.join("args.json");
    if !args_file.exists() {
        let args = serde_json::json!([
            "--secure-port",
            inst.secure_port().to_string(),
            "--controllers",
            a.controllers,
            "-v",
            "0"
        ]);
        fs::write(&args_file, args.to_string()).with_context(|| args_file.display().to_string())?;
    }
    let pid_file = dir.join("rdd.pid");
    {
        let mut f = fs::File::create(&pid_file).with_context(|| pid_file.display().to_string())?;
        write!(f, "{}", std::process::id())?;
    }
    let mut cfg = rdd_apiserver::Config::new(
        dir.clone(),
        a.secure_port.unwrap_or_else(|| inst.secure_port()),
    );
    cfg.sync_full = a.storage_sync == "full";
    cfg.disable_aggregated_discovery = a.disable_aggregated_discovery;
    cfg.reject_send_initial_events = a.reject_send_initial_events;
    cfg.max_inflight = a.max_inflight;
    cfg.compaction_interval = std::time::Duration::from_secs(a.compaction_interval_seconds.max(1));
    cfg.compaction_keep = a.compaction_keep_revisions.max(0);
    cfg.gc_delay = std::time::Duration::from_millis(a.gc_delay_ms);
    cfg.manifests = super::identities::manifests()?;
    let running = rdd_apiserver::start(cfg).await?;
    let server = format!("https://127.0.0.1:{}", running.addr.port());
    rdd_apiserver::kubeconfig::write(
        &dir.join("config.yaml"),
        &running.pki,
        &server,
        &inst.name(),
    )?;
    tracing::info!(%server, instance = %inst.name(), "control plane is serving");
    eprintln!("rdd control plane {} serving on {server}", inst.name());

    let enabled = super::selection::enabled(&a.controllers).map_err(anyhow::Error::msg)?;
    let procs = super::selection::procs(&enabled);
    super::supervise::kill_leftovers(&inst);
    let client = super::control::client(&inst).await?;
    super::manifests::install(&client, &enabled)
        .await
        .context("installing deploy/ manifests")?;
    let kubeconfigs = super::supervise::identities(&inst, &procs, &server)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let sup = std::sync::Arc::new(super::supervise::Supervisor {
        inst: inst.clone(),
        table: Default::default(),
        log_level: a.child_log_level.clone(),
        stop: stop.clone(),
        routes: running.state.config.passthrough.clone(),
    });
    let supervising = tokio::spawn(sup.clone().run(procs, kubeconfigs));
    tokio::spawn(sup.clone().watch_readiness());
    tokio::spawn(super::supervise::publish_discovery(
        client,
        sup.table.clone(),
        enabled,
        chrono::Utc::now(),
        stop.clone(),
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping controllers, then the API server");
    stop.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(45), supervising)
        .await
        .is_err()
    {
        tracing::warn!("children did not stop within 45s");
    }
    running.abort();
    let _ = fs::remove_file(&pid_file);
    Ok(0)
}
