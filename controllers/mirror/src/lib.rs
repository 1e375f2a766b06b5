//! What the three mirror controllers (container, image, volume) share (`shared/design/processes.md`):
//!
//! - [`gateway`]: the docker-gateway client, with trace propagation on every call;
//! - [`app`]: what the App wants (mirror, stopped, not applicable, gone) and the writer of this
//!   controller's `<Kind>sSynced` App condition (server-side apply of that one list-map entry);
//! - [`session`]: the engine session per App — subscribe first, wait for `Synced`, full sync,
//!   per-event applies, relist on `Resync`, `ConnectFailed` on a gateway disconnect, stop and
//!   sweep when no longer wanted;
//! - [`sweep`]: strip only our finalizer, delete, and report objects held by someone else's.

pub mod app;
pub mod gateway;
pub mod session;
pub mod sweep;

/// The mirror finalizer (resources.md §7.1): an API delete is forwarded to Docker first.
pub const FINALIZER: &str = "engine.rancherdesktop.io/mirror";

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Kit(#[from] rdd_kit::KitError),
    #[error("docker-gateway: {0}")]
    Gateway(#[from] tonic::Status),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

/// True for a Kubernetes API error with this HTTP code.
pub fn is_api_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
