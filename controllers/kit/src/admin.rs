//! The admin endpoint (`/healthz`, `/readyz`, `/metrics`) of a controller, serving the kit's
//! controller-runtime metrics through the shared process plumbing.

use std::net::SocketAddr;
use std::sync::Arc;

pub use rdd_process::admin::Health;

use crate::KitError;
use crate::metrics::Metrics;

/// Bind `addr` and serve in the background; returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
) -> Result<SocketAddr, KitError> {
    rdd_process::admin::serve(addr, Arc::new(move || metrics.encode()), health)
        .await
        .map_err(|e| KitError::Config(format!("admin endpoint on {addr}: {e}")))
}
