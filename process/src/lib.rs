//! What every rdd process shares, whatever its job:
//!
//! - [`instance`]: the instance identity (`RDD_INSTANCE`) and the paths derived from it;
//! - [`config`]: figment loading from defaults, a YAML file and `RDD_*` environment variables;
//! - [`telemetry`]: `tracing` with optional OTLP export, and W3C `traceparent` propagation over
//!   HTTP headers and gRPC metadata;
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` on a configurable address;
//! - [`lock`]: the advisory lock that keeps a second copy of a process off the same instance.

pub mod admin;
pub mod config;
pub mod instance;
pub mod lock;
pub mod telemetry;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("{0}")]
    Locked(String),
}
