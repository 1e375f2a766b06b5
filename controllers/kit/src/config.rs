//! Process configuration: defaults, then a YAML file (`--config` or `RDD_CONFIG`), then `RDD_*`
//! environment variables (`RDD_ADMIN_ADDR`, `RDD_KUBECONFIG`, `RDD_LOG_LEVEL`, …), later ones
//! winning; flags are merged on top by the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::KitError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KitConfig {
    /// Address of the admin server (`/healthz`, `/readyz`, `/metrics`).
    pub admin_addr: SocketAddr,
    /// Kubeconfig to use; the standard discovery (KUBECONFIG, in-cluster) when absent.
    pub kubeconfig: Option<PathBuf>,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log_level: String,
    /// OTLP/gRPC trace collector; `OTEL_EXPORTER_OTLP_ENDPOINT` also works.
    pub otlp_endpoint: Option<String>,
}

impl Default for KitConfig {
    fn default() -> Self {
        KitConfig {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            log_level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

impl KitConfig {
    /// Load with the precedence above. `file` is the `--config` flag.
    pub fn load(file: Option<&std::path::Path>) -> Result<KitConfig, KitError> {
        rdd_process::config::load(file).map_err(|e| KitError::Config(e.to_string()))
    }
}

/// The `--help` text every binary appends, documenting file and environment.
pub const HELP: &str = "Configuration (later sources win): built-in defaults; a YAML file given by --config or RDD_CONFIG with keys admin_addr, kubeconfig, log_level, otlp_endpoint; the environment variables RDD_ADMIN_ADDR, RDD_KUBECONFIG, RDD_LOG_LEVEL, RDD_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT); then flags.";
