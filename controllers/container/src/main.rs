use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use container_controller::config::{Config, HELP};
use container_controller::engine::{Containers, FIELD_MANAGER, docker_label_filters};
use container_controller::reconcile::{Ctx, reconcile};
use figment::providers::Serialized;
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use rdd_api::app::App;
use rdd_api::containers::Container;
use rdd_kit::apply::Applier;
use rdd_kit::metrics::Metrics;
use rdd_mirror::app::SyncedWriter;
use rdd_mirror::session::{EngineState, Session, follow_app};
use rdd_process::instance::Instance;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The container-controller: mirrors the instance's Docker containers as Container objects
/// (through the docker-gateway), runs the actions of the containers.rancherdesktop.io/action
/// annotation, forwards API deletes to Docker, and reports ContainersSynced on the App.
#[derive(Parser, Serialize)]
#[command(version, after_help = HELP)]
struct Args {
    /// YAML configuration file (also RDD_CONFIG).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Kubeconfig of this controller's identity.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    kubeconfig: Option<PathBuf>,
    /// The docker-gateway's gRPC Unix socket.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_socket: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_addr: Option<SocketAddr>,
    /// Mirror only containers with these labels (`a=b,c`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    label_selector: Option<String>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    /// OTLP/gRPC endpoint for traces.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("container-controller: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let inst = Instance::from_env().map_err(anyhow::Error::msg)?;
    let f = rdd_process::config::figment(&Config::for_instance(&inst), args.config.as_deref())?
        .merge(Serialized::defaults(&args));
    let cfg: Config = rdd_process::config::extract(f)?;
    let _telemetry = rdd_process::telemetry::init(
        "container-controller",
        &cfg.log_level,
        cfg.otlp_endpoint.as_deref(),
    )?;
    let client = rdd_kit::client(cfg.kubeconfig.as_deref()).await?;
    let gateway = rdd_mirror::gateway::connect(&cfg.gateway_socket);
    let metrics = Arc::new(Metrics::new());
    let health = rdd_kit::admin::Health::default();
    let admin = rdd_kit::admin::serve(cfg.admin_addr, metrics.clone(), health.clone()).await?;
    tracing::info!(%admin, gateway = %cfg.gateway_socket.display(), "container-controller starting");
    // The App controller waits for the engine only when a process says it runs it.
    if let Err(e) = rdd_kit::discovery::publish(
        &client,
        FIELD_MANAGER,
        &rdd_kit::discovery::Entry::new(admin, &["engine", "container", "containernamespace"]),
    )
    .await
    {
        tracing::warn!(error = %e, "publishing the discovery entry");
    }

    let shutdown = CancellationToken::new();
    // One cache of every Container: the engine session compares against it, the reconcile
    // runner is driven by it. Its own task keeps it polled (ready whatever the runner does) and
    // hands the applied objects to the runner through a bounded channel.
    let containers: Api<Container> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let informer = watcher(containers, watcher::Config::default())
        .default_backoff()
        // managedFields are never compared: keep them out of memory.
        .modify(|c| c.metadata.managed_fields = None)
        .reflect(writer)
        .applied_objects();
    let (objects_tx, objects_rx) = tokio::sync::mpsc::channel(1024);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut informer = std::pin::pin!(informer);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = informer.next() => next,
            };
            let Some(item) = next else { return };
            if objects_tx.send(item).await.is_err() {
                return;
            }
        }
    });
    let objects = futures::stream::unfold(objects_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });

    let apps: Api<App> = Api::all(client.clone());
    let (app_tx, app_rx) = watch::channel(None);
    tokio::spawn(follow_app(apps.clone(), app_tx, shutdown.clone()));
    let (state_tx, state_rx) = watch::channel(EngineState::default());
    let kind = Arc::new(Containers {
        client: client.clone(),
        gateway: gateway.clone(),
        store: store.clone(),
        labels: docker_label_filters(&cfg.label_selector),
        concurrency: cfg.sync_concurrency,
        sweep_wait: Duration::from_secs(cfg.sweep_wait_seconds),
    });
    tokio::spawn(container_controller::engine::repair_moby(
        kind.clone(),
        state_rx.clone(),
        shutdown.clone(),
    ));
    let session = Session {
        kind,
        gateway: gateway.clone(),
        writer: SyncedWriter {
            api: apps,
            applier: Applier::new(FIELD_MANAGER),
            type_: "ContainersSynced".into(),
            connected_message: "Containers synced".into(),
        },
        label_selector: cfg.label_selector.clone(),
        subscriber: "container-controller".into(),
        state: state_tx,
    };
    let session = tokio::spawn(session.run(app_rx, shutdown.clone()));
    let runner_store = store;
    health.set_ready(true);

    let ctx = Arc::new(Ctx {
        client,
        gateway,
        state: state_rx,
    });
    // Returns on SIGTERM/SIGINT (the kit's runner handles the signals).
    rdd_kit::runner::run_with_cache(
        "container",
        runner_store,
        objects,
        ctx,
        metrics,
        rdd_kit::runner::Options::default(),
        reconcile,
    )
    .await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
    Ok(())
}
