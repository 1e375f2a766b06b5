//! The controller kit: what every rdd controller shares, so each controller crate holds only its
//! reconcile table.
//!
//! - [`conditions`]: Kubernetes-convention condition updates that report whether anything changed.
//! - [`finalizer`]: add a finalizer only to live objects; remove only our own.
//! - [`apply`]: server-side apply under one field manager, conflict retry, NotFound as success.
//! - [`metrics`], [`admin`]: controller-runtime metric names; `/healthz`, `/readyz`, `/metrics`.
//! - [`config`]: figment configuration from defaults, a file and `RDD_*` environment variables.
//! - [`owned`]: controllers.md §0.3, deleting what an owner owns across every served kind.
//! - [`discovery`]: this process's entry in the controller-manager discovery ConfigMap.
//! - [`cache`]: an informer whose readiness any number of tasks may await (kube-runtime's
//!   `Store::wait_until_ready` wakes only one).
//! - [`runner`]: a kube-runtime `Controller` with predicates, instrumentation, backoff and
//!   graceful shutdown.
//! - [`counting`]: client layers counting every API request (`rest_client_requests_total`) and
//!   sending the caller's trace context (`traceparent`).

pub mod admin;
pub mod apply;
pub mod cache;
pub mod conditions;
pub mod config;
pub mod counting;
pub mod discovery;
pub mod events;
pub mod finalizer;
pub mod lease;
pub mod metrics;
pub mod owned;
pub mod runner;
pub mod webhook;

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("admin server: {0}")]
    Io(#[from] std::io::Error),
    #[error("owned-resource cleanup: {0}")]
    Cleanup(String),
    #[error("the informer stopped before its cache was ready")]
    InformerStopped,
}

/// A client for `kubeconfig` (a controller's own identity), or the standard discovery
/// (`KUBECONFIG`, in-cluster) when none is given.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, KitError> {
    let Some(path) = kubeconfig else {
        return Ok(kube::Client::try_default().await?);
    };
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| KitError::Config(format!("reading kubeconfig {}: {e}", path.display())))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| KitError::Config(format!("kubeconfig {}: {e}", path.display())))?;
    Ok(kube::Client::try_from(cfg)?)
}

/// [`client`] whose every request is counted in `metrics` (`rest_client_requests_total`), so a
/// test or an operator can see what a controller costs the API server, and carries the
/// caller's trace context ([`counting::TraceLayer`]).
pub async fn counted_client(
    kubeconfig: Option<&std::path::Path>,
    metrics: &metrics::Metrics,
) -> Result<kube::Client, KitError> {
    let cfg = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                KitError::Config(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| KitError::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| KitError::Config(format!("kubeconfig: {e}")))?,
    };
    let layer = counting::CountLayer::new(metrics.rest_client_requests.clone());
    Ok(kube::client::ClientBuilder::try_from(cfg)?
        .with_layer(&layer)
        .with_layer(&counting::TraceLayer)
        .build())
}
