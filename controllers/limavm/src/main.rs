//! limavm-controller: LimaVM objects → Lima instances through `limactl` (controllers.md §3,
//! lima.md), with the host agent as a supervised child and the LimaVM admission webhooks.

mod admission;
mod agent;
mod limactl;
mod prepare;
mod reconcile;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use figment::providers::Serialized;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use rdd_api::limavm::LimaVM;
use rdd_process::instance::Instance;
use serde::{Deserialize, Serialize};

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Kit(#[from] rdd_kit::KitError),
    #[error("limactl: {0}")]
    Limactl(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("owned-resource cleanup: {0}")]
    Cleanup(String),
    #[error("{0}")]
    Prepare(#[from] prepare::PrepareError),
}

pub const FIELD_MANAGER: &str = "limavm-controller";

const HELP: &str = "Configuration (later sources win): built-in defaults; a YAML file given by --config or RDD_CONFIG; the environment variables RDD_<KEY> for every key; then flags. Keys: admin_addr, kubeconfig, log_level, otlp_endpoint, limactl (the limactl program; tests use limactl-standin), lima_home (default <short dir>/lima), webhook_addr (default 127.0.0.1:0; a free port, never a fixed one), webhook_tls_dir (the instance CA ca.crt/ca.key the serving certificate is issued from; default <instance dir>/tls), webhook_register (apply deploy/webhooks/limavm-*.yaml with this process's URL and the CA bundle; default true), pid_wait_secs (how long a start waits for ha.pid; default 120), image_cache (the download cache of instance images, laid out like Lima's; default $XDG_CACHE_HOME/lima/download or ~/.cache/lima/download). RDD_INSTANCE selects the instance.";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Config {
    admin_addr: SocketAddr,
    kubeconfig: Option<PathBuf>,
    log_level: String,
    otlp_endpoint: Option<String>,
    limactl: PathBuf,
    lima_home: PathBuf,
    webhook_addr: Option<SocketAddr>,
    webhook_tls_dir: PathBuf,
    webhook_register: bool,
    pid_wait_secs: u64,
    image_cache: PathBuf,
}

impl Config {
    fn for_instance(inst: &Instance) -> Config {
        Config {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            log_level: "info".into(),
            otlp_endpoint: None,
            limactl: PathBuf::from("limactl"),
            lima_home: inst.short_dir().join("lima"),
            webhook_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            webhook_tls_dir: inst.dir().join("tls"),
            webhook_register: true,
            pid_wait_secs: 120,
            image_cache: prepare::default_cache(),
        }
    }
}

/// The LimaVM controller: Lima instances through `limactl`, host agents as supervised children,
/// and the LimaVM admission webhooks.
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
    /// The limactl program.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    limactl: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_addr: Option<SocketAddr>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("limavm-controller: {e:#}");
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
        "limavm-controller",
        &cfg.log_level,
        cfg.otlp_endpoint.as_deref(),
    )?;
    // Every limactl invocation sees LIMA_HOME (set per command; this process's environment is
    // left alone).
    let limactl = limactl::Limactl {
        program: cfg.limactl.clone(),
        lima_home: cfg.lima_home.clone(),
    };
    let metrics = Arc::new(rdd_kit::metrics::Metrics::new());
    let client = rdd_kit::counted_client(cfg.kubeconfig.as_deref(), &metrics).await?;
    let health = rdd_kit::admin::Health::default();
    let admin = rdd_kit::admin::serve(cfg.admin_addr, metrics.clone(), health.clone()).await?;
    // Liveness is served while a standby replica waits for the Lease.
    rdd_kit::lease::gate(&client, "limavm-controller").await?;
    tracing::info!(%admin, "admin endpoint");

    if let Some(addr) = cfg.webhook_addr {
        use rdd_kit::webhook::{Registration, Webhooks};
        rdd_kit::webhook::start(
            &client,
            FIELD_MANAGER,
            Webhooks {
                addr,
                tls_dir: &cfg.webhook_tls_dir,
                common_name: "limavm-controller-webhooks",
                register: cfg.webhook_register,
                configs: &[
                    Registration {
                        mutating: true,
                        name: "limavm-defaulter",
                        template: include_str!("../../../deploy/webhooks/limavm-defaulter.yaml"),
                    },
                    Registration {
                        mutating: false,
                        name: "limavm-validator",
                        template: include_str!("../../../deploy/webhooks/limavm-validator.yaml"),
                    },
                    Registration {
                        mutating: false,
                        name: "limavm-configmap-validator",
                        template: include_str!(
                            "../../../deploy/webhooks/limavm-configmap-validator.yaml"
                        ),
                    },
                ],
            },
            admission::routes(client.clone(), limactl.clone()),
        )
        .await?;
    }

    let (tx, rx) = tokio::sync::mpsc::channel::<ObjectRef<LimaVM>>(16);
    let agents = agent::Agents::new(limactl.clone(), tx);
    let ctx = Arc::new(reconcile::Ctx {
        client: client.clone(),
        limactl,
        agents: agents.clone(),
        recorder: rdd_kit::events::Recorder::new(client.clone(), FIELD_MANAGER),
        fetcher: prepare::Fetcher::new(cfg.image_cache.clone())
            .map_err(|e| anyhow::anyhow!("TLS settings for image downloads: {e}"))?,
        pid_wait: Duration::from_secs(cfg.pid_wait_secs),
    });
    let phase_changes =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
            .boxed();
    // Template copies: a change of a ConfigMap controlled by a LimaVM wakes that LimaVM.
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let copies = watcher(
        cms,
        watcher::Config::default().labels(&format!(
            "{}=true",
            rdd_api::names::TEMPLATE_CONFIGMAP_LABEL
        )),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|r| async move {
        let cm = r.ok()?;
        let owner = cm
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "LimaVM")?
            .clone();
        Some(ObjectRef::<LimaVM>::new(&owner.name).within(&cm.namespace().unwrap_or_default()))
    })
    .boxed();
    rdd_kit::discovery::publish(
        &client,
        FIELD_MANAGER,
        &rdd_kit::discovery::Entry::new(admin, &["limavm"]),
    )
    .await?;
    health.set_ready(true);
    rdd_kit::runner::run_with(
        "limavm",
        Api::<LimaVM>::all(client.clone()),
        ctx,
        metrics,
        rdd_kit::runner::Options {
            wake_on_status: true,
            triggers: vec![phase_changes, copies],
        },
        reconcile::reconcile,
    )
    .await;
    tracing::info!("controller stopped; shutting down host agents");
    if let Err(e) = rdd_kit::discovery::withdraw(&client, FIELD_MANAGER).await {
        tracing::warn!(error = %e, "withdrawing the discovery entry");
    }
    // §3.9: interrupt first, in parallel; the whole shutdown capped at 45 s.
    if tokio::time::timeout(Duration::from_secs(45), agents.shutdown_all())
        .await
        .is_err()
    {
        tracing::warn!("host agent shutdown did not finish within 45 s");
    }
    Ok(())
}
