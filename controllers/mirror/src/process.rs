//! The process around a mirror kind, the same for the container-, image- and volume-controller:
//! flags and figment configuration, telemetry, the counted API client, the gateway client, the
//! admin endpoint, the discovery entry, one informer of the kind (the engine session compares
//! against it, the reconcile runner is driven by it), the App follower, the engine session, and
//! the runner until SIGTERM/SIGINT.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use figment::providers::Serialized;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use rdd_api::app::App;
use rdd_kit::apply::Applier;
use rdd_kit::metrics::Metrics;
use rdd_process::instance::Instance;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::MirrorError;
use crate::app::SyncedWriter;
use crate::gateway::Gateway;
use crate::session::{EngineState, MirrorKind, Session, follow_app};

/// Flags (each also a configuration key).
#[derive(Parser, Serialize)]
#[command(version)]
pub struct Args {
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
    /// The docker-gateway over TCP instead: https://host:port (mutual TLS) or http://host:port.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_addr: Option<String>,
    /// PEM CA the gateway's certificate must chain to.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_tls_ca: Option<PathBuf>,
    /// PEM client certificate presented to the gateway (with --gateway-tls-key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_tls_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_tls_key: Option<PathBuf>,
    /// Name the gateway's certificate must carry (default: the host of --gateway-addr).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_tls_server_name: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_addr: Option<SocketAddr>,
    /// Mirror only objects with these labels (`a=b,c`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    label_selector: Option<String>,
    /// Concurrent inspects during a full sync.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_concurrency: Option<usize>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    /// OTLP/gRPC endpoint for traces.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<String>,
}

/// The configuration of a mirror controller.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin_addr: SocketAddr,
    /// Kubeconfig of this controller's identity; standard discovery when absent.
    pub kubeconfig: Option<PathBuf>,
    /// The docker-gateway's gRPC Unix socket.
    pub gateway_socket: PathBuf,
    /// The docker-gateway over TCP (`https://host:port`, `http://host:port`); when set it is
    /// used instead of `gateway_socket` (cluster deployments: the node's gateway).
    pub gateway_addr: Option<String>,
    /// TLS of `gateway_addr`: the CA of the gateway's certificate, this controller's client
    /// certificate and key (mutual TLS), and the name the gateway's certificate must carry.
    pub gateway_tls_ca: Option<PathBuf>,
    pub gateway_tls_cert: Option<PathBuf>,
    pub gateway_tls_key: Option<PathBuf>,
    pub gateway_tls_server_name: Option<String>,
    /// Mirror only objects matching this equality label selector (`a=b,c`); empty: all.
    pub label_selector: String,
    /// Concurrent inspects during a full sync.
    pub sync_concurrency: usize,
    /// How long a sweep waits for mirrors to disappear before reporting the blockers.
    pub sweep_wait_seconds: u64,
    pub log_level: String,
    pub otlp_endpoint: Option<String>,
}

impl Config {
    pub fn for_instance(inst: &Instance) -> Config {
        Config {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            gateway_socket: inst.gateway_socket(),
            gateway_addr: None,
            gateway_tls_ca: None,
            gateway_tls_cert: None,
            gateway_tls_key: None,
            gateway_tls_server_name: None,
            label_selector: String::new(),
            sync_concurrency: 16,
            sweep_wait_seconds: 30,
            log_level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

/// The `--help` text after the flags: file and environment.
pub fn help(name: &str, objects: &str) -> String {
    format!(
        "Configuration (later sources win): defaults derived from the instance (RDD_INSTANCE); a \
YAML file given by --config or RDD_CONFIG; RDD_* environment variables; then flags. Keys \
(environment variable in brackets): admin_addr [RDD_ADMIN_ADDR] /healthz /readyz /metrics, \
default 127.0.0.1:0; kubeconfig [RDD_KUBECONFIG] this controller's kubeconfig (`rdd svc token \
create --controller {name}`), default: KUBECONFIG / in-cluster discovery; gateway_socket \
[RDD_GATEWAY_SOCKET] default <instance dir>/docker-gateway.sock; gateway_addr \
[RDD_GATEWAY_ADDR] the gateway over TCP instead of the socket: https://host:port (mutual TLS) or \
http://host:port; gateway_tls_ca [RDD_GATEWAY_TLS_CA] PEM CA of the gateway's certificate \
(required for https); gateway_tls_cert, gateway_tls_key [RDD_GATEWAY_TLS_CERT, \
RDD_GATEWAY_TLS_KEY] PEM client certificate and key presented to the gateway; \
gateway_tls_server_name [RDD_GATEWAY_TLS_SERVER_NAME] name the gateway's certificate must \
carry, default the host of gateway_addr; label_selector \
[RDD_LABEL_SELECTOR] mirror only matching {objects} (equality terms), default all; \
sync_concurrency [RDD_SYNC_CONCURRENCY] default 16; sweep_wait_seconds \
[RDD_SWEEP_WAIT_SECONDS] default 30; log_level [RDD_LOG_LEVEL] default info; otlp_endpoint \
[RDD_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT] OTLP/gRPC trace export."
    )
}

/// What distinguishes one mirror controller binary from another.
pub struct Binary {
    /// Process, field manager and subscriber name: `image-controller`.
    pub name: &'static str,
    /// `--help` summary.
    pub about: &'static str,
    /// What the label selector selects, for `--help`: `images`.
    pub objects: &'static str,
    /// The runner's controller name (metrics label): `image`.
    pub controller: &'static str,
    /// `enabledControllers` of the discovery entry: `["image"]`.
    pub serves: &'static [&'static str],
    /// `ImagesSynced` and its `Connected` message.
    pub synced_type: &'static str,
    pub synced_message: &'static str,
    /// Whether the gateway filters events by the label selector. Only container events carry
    /// the object's labels in their attributes; image deletes and volume events do not, so
    /// those kinds filter after their inspect (`labels`).
    pub selector_in_subscription: bool,
}

/// What a kind and its reconcile context are built from.
pub struct Started<R: Resource<DynamicType = ()> + 'static> {
    pub cfg: Config,
    pub client: Client,
    pub gateway: Gateway,
    /// The informer's cache. Never `wait_until_ready()` on it: the runner does, and a second
    /// waiter may never be woken; wait on [`Started::ready`].
    pub store: Store<R>,
    /// Whether `store` holds its first complete list (any number of waiters).
    pub ready: rdd_kit::cache::Ready,
    pub state: watch::Receiver<EngineState>,
    pub shutdown: CancellationToken,
    /// Tasks the process's shutdown waits for (see [`Started::spawn_awaited`]).
    awaited: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// How long the shutdown waits for the engine session and the awaited tasks together (the
/// supervisor sends SIGKILL 40 s after SIGTERM, `rdd svc` supervise.rs).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

impl<R: Resource<DynamicType = ()> + 'static> Started<R> {
    /// Spawn a task whose end the process's shutdown awaits (bounded by [`SHUTDOWN_WAIT`]):
    /// for work that undoes something outside the process when `shutdown` is cancelled (the
    /// Docker CLI context), which a plain `tokio::spawn` would lose when `main` returns and
    /// the runtime drops its tasks at their next await.
    pub fn spawn_awaited(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        match self.awaited.lock() {
            Ok(mut v) => v.push(handle),
            Err(poisoned) => poisoned.into_inner().push(handle),
        }
    }
}

/// Parse flags and configuration, then run until SIGTERM/SIGINT.
pub async fn run<R, M, C, E, F, Fut>(
    bin: Binary,
    make_kind: impl FnOnce(&Started<R>) -> M,
    make_ctx: impl FnOnce(&Started<R>, Arc<M>) -> C,
    reconcile: F,
) -> Result<(), MirrorError>
where
    R: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R::DynamicType: Eq + Hash + Clone + Default,
    M: MirrorKind,
    C: Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(Arc<R>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
{
    let cmd = Args::command()
        .name(bin.name)
        .about(bin.about)
        .after_help(help(bin.name, bin.objects));
    let args = Args::from_arg_matches(&cmd.get_matches())
        .map_err(|e| MirrorError::Other(e.to_string()))?;
    let err = |e: rdd_process::ProcessError| MirrorError::Other(e.to_string());
    let inst = Instance::from_env().map_err(MirrorError::Other)?;
    let f = rdd_process::config::figment(&Config::for_instance(&inst), args.config.as_deref())
        .map_err(err)?
        .merge(Serialized::defaults(&args));
    let cfg: Config = rdd_process::config::extract(f).map_err(err)?;
    let _telemetry =
        rdd_process::telemetry::init(bin.name, &cfg.log_level, cfg.otlp_endpoint.as_deref())
            .map_err(err)?;
    let metrics = Arc::new(Metrics::new());
    let client = rdd_kit::counted_client(cfg.kubeconfig.as_deref(), &metrics).await?;
    let (gateway, gateway_at) = match &cfg.gateway_addr {
        Some(addr) if !addr.is_empty() => {
            let target = crate::gateway::TcpTarget {
                addr: addr.clone(),
                ca: cfg.gateway_tls_ca.clone(),
                cert: cfg.gateway_tls_cert.clone(),
                key: cfg.gateway_tls_key.clone(),
                server_name: cfg.gateway_tls_server_name.clone(),
            };
            (crate::gateway::connect_tcp(&target)?, addr.clone())
        }
        _ => (
            crate::gateway::connect(&cfg.gateway_socket),
            cfg.gateway_socket.display().to_string(),
        ),
    };
    let health = rdd_kit::admin::Health::default();
    let admin = rdd_kit::admin::serve(cfg.admin_addr, metrics.clone(), health.clone()).await?;
    // Liveness is served while a standby replica waits for the Lease.
    rdd_kit::lease::gate(&client, bin.name).await?;
    tracing::info!(%admin, gateway = %gateway_at, "{} starting", bin.name);
    // The App controller waits for the engine kinds whose processes say they run.
    if let Err(e) = rdd_kit::discovery::publish(
        &client,
        bin.name,
        &rdd_kit::discovery::Entry::new(admin, bin.serves),
    )
    .await
    {
        tracing::warn!(error = %e, "publishing the discovery entry");
    }

    let shutdown = CancellationToken::new();
    // One cache of the kind: the session compares against it, the runner is driven by it. Its
    // own task keeps it polled (ready whatever the runner does) and hands the applied objects to
    // the runner through a bounded channel.
    // The runner waits on the store's own readiness; everyone else on `ready` (rdd_kit::cache:
    // a second waiter on the store could hang the full sync for good).
    let api: Api<R> = Api::all(client.clone());
    let (store, ready, informer) = rdd_kit::cache::informer(api);
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
    let started = Started {
        cfg: cfg.clone(),
        client: client.clone(),
        gateway: gateway.clone(),
        store: store.clone(),
        ready,
        state: state_rx,
        shutdown: shutdown.clone(),
        awaited: Arc::default(),
    };
    let kind = Arc::new(make_kind(&started));
    let session = Session {
        kind: kind.clone(),
        client: client.clone(),
        gateway,
        writer: SyncedWriter {
            api: apps,
            applier: Applier::new(bin.name),
            type_: bin.synced_type.into(),
            connected_message: bin.synced_message.into(),
        },
        label_selector: if bin.selector_in_subscription {
            cfg.label_selector.clone()
        } else {
            String::new()
        },
        subscriber: bin.name.into(),
        state: state_tx,
    };
    let session = tokio::spawn(session.run(app_rx, shutdown.clone()));
    let ctx = Arc::new(make_ctx(&started, kind));
    let awaited = started.awaited.clone();
    health.set_ready(true);
    // Returns on SIGTERM/SIGINT (the kit's runner handles the signals).
    rdd_kit::runner::run_with_cache(
        bin.controller,
        store,
        objects,
        ctx,
        metrics,
        rdd_kit::runner::Options::default(),
        reconcile,
    )
    .await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let tasks = match awaited.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    let all = async move {
        let _ = session.await;
        futures::future::join_all(tasks).await;
    };
    if tokio::time::timeout(SHUTDOWN_WAIT, all).await.is_err() {
        tracing::warn!(
            seconds = SHUTDOWN_WAIT.as_secs(),
            "the engine session or a shutdown task did not finish in time"
        );
    }
    Ok(())
}
