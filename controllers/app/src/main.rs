//! app-controller: the App → Namespace, template, LimaVM `rd`; App conditions `Created`,
//! `Running` (mirrored), `ContainerEngineReady` (from the mirror controllers' `<Kind>sSynced`)
//! and `Settled` (controllers.md §2).

mod admission;
mod reconcile;
mod settled;
mod template;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use figment::providers::Serialized;
use futures::StreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use rdd_api::app::App;
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
    #[error("rendering the Lima template: {0}")]
    Render(#[from] template::RenderError),
    #[error("{0}")]
    Invalid(String),
    #[error("retry: {0}")]
    Retry(String),
}

pub const FIELD_MANAGER: &str = "app-controller";

const HELP: &str = "Configuration (later sources win): built-in defaults; a YAML file given by --config or RDD_CONFIG with keys admin_addr, kubeconfig, log_level, otlp_endpoint, webhook_addr (default 127.0.0.1:0, a free port), webhook_tls_dir (the instance CA the serving certificate is issued from; default <instance dir>/tls), webhook_register (apply deploy/webhooks/app-*.yaml with this URL; default true); the environment variables RDD_<KEY> (RDD_ADMIN_ADDR, RDD_KUBECONFIG, RDD_LOG_LEVEL, RDD_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, RDD_WEBHOOK_ADDR, …); then flags. RDD_INSTANCE selects the instance (paths and the Kubernetes port 7441+index); RDD_VM_CPUS, RDD_VM_TYPE, RDD_KEEP_LOGS and RDD_TRACE_PACKETS shape the rendered Lima template; RDD_IMAGE_BASE_URL replaces the release URL the distro images are downloaded from (a mirror, or a local directory as a path or file:// URL).";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Config {
    admin_addr: SocketAddr,
    kubeconfig: Option<PathBuf>,
    log_level: String,
    otlp_endpoint: Option<String>,
    /// The App webhooks' HTTPS address (a free loopback port by default); none disables them.
    webhook_addr: Option<SocketAddr>,
    /// Where the instance CA lives (`ca.crt`, `ca.key`); default `<instance dir>/tls`.
    webhook_tls_dir: Option<PathBuf>,
    /// Apply deploy/webhooks/app-*.yaml with this process's URL.
    webhook_register: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            log_level: "info".into(),
            otlp_endpoint: None,
            webhook_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            webhook_tls_dir: None,
            webhook_register: true,
        }
    }
}

/// The App controller.
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
            eprintln!("app-controller: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let instance = Instance::from_env().map_err(anyhow::Error::msg)?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    let f = rdd_process::config::figment(&Config::default(), args.config.as_deref())?
        .merge(Serialized::defaults(&args));
    let cfg: Config = rdd_process::config::extract(f)?;
    let _telemetry = rdd_process::telemetry::init(
        "app-controller",
        &cfg.log_level,
        cfg.otlp_endpoint.as_deref(),
    )?;
    let metrics = Arc::new(rdd_kit::metrics::Metrics::new());
    let client = rdd_kit::counted_client(cfg.kubeconfig.as_deref(), &metrics).await?;
    let health = rdd_kit::admin::Health::default();
    let admin = rdd_kit::admin::serve(cfg.admin_addr, metrics.clone(), health.clone()).await?;
    // Liveness is served while a standby replica waits for the Lease.
    rdd_kit::lease::gate(&client, "app-controller").await?;
    tracing::info!(%admin, "admin endpoint");
    if let Some(addr) = cfg.webhook_addr {
        use rdd_kit::webhook::{Registration, Webhooks};
        let tls_dir = cfg
            .webhook_tls_dir
            .clone()
            .unwrap_or_else(|| instance.dir().join("tls"));
        let versions = Arc::new(admission::K3sVersions::bundled()?);
        rdd_kit::webhook::start(
            &client,
            FIELD_MANAGER,
            Webhooks {
                addr,
                tls_dir: &tls_dir,
                common_name: "app-controller-webhooks",
                register: cfg.webhook_register,
                configs: &[
                    Registration {
                        mutating: true,
                        name: "app-defaulter",
                        template: include_str!("../../../deploy/webhooks/app-defaulter.yaml"),
                    },
                    Registration {
                        mutating: false,
                        name: "app-validator",
                        template: include_str!("../../../deploy/webhooks/app-validator.yaml"),
                    },
                ],
            },
            admission::routes(versions),
        )
        .await?;
    }
    let ctx = Arc::new(reconcile::Ctx {
        client: client.clone(),
        instance,
        home,
        recorder: rdd_kit::events::Recorder::new(client.clone(), FIELD_MANAGER),
        applier: rdd_kit::apply::Applier::new(FIELD_MANAGER),
    });
    // Any change of a LimaVM controlled by an App wakes that App.
    let vms = watcher(
        Api::<LimaVM>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|r| async move {
        let vm = r.ok()?;
        let owner = vm
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "App")?
            .clone();
        Some(ObjectRef::<App>::new(&owner.name))
    })
    .boxed();
    rdd_kit::discovery::publish(
        &client,
        FIELD_MANAGER,
        &rdd_kit::discovery::Entry::new(admin, &["app"]),
    )
    .await?;
    health.set_ready(true);
    rdd_kit::runner::run_with(
        "app",
        Api::<App>::all(client.clone()),
        ctx,
        metrics,
        rdd_kit::runner::Options {
            wake_on_status: true,
            triggers: vec![vms],
        },
        reconcile::reconcile,
    )
    .await;
    tracing::info!("stopped");
    if let Err(e) = rdd_kit::discovery::withdraw(&client, FIELD_MANAGER).await {
        tracing::warn!(error = %e, "withdrawing the discovery entry");
    }
    Ok(())
}
