//! Process configuration: defaults, then a YAML file (`--config` or `RDD_CONFIG`), then `RDD_*`
//! environment variables (`RDD_ADMIN_ADDR`, `RDD_KUBECONFIG`, `RDD_LOG_LEVEL`, …), later ones
//! winning; flags are merged on top by the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
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
}

impl Default for KitConfig {
    fn default() -> Self {
        KitConfig {
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            log_level: "info".into(),
        }
    }
}

impl KitConfig {
    /// Load with the precedence above. `file` is the `--config` flag.
    pub fn load(file: Option<&std::path::Path>) -> Result<KitConfig, KitError> {
        let mut f = Figment::from(Serialized::defaults(KitConfig::default()));
        let file = file
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("RDD_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            if !path.exists() {
                return Err(KitError::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            f = f.merge(Yaml::file(path));
        }
        f.merge(Env::prefixed("RDD_").ignore(&["config"]))
            .extract()
            .map_err(|e| KitError::Config(e.to_string()))
    }
}

/// The `--help` text every binary appends, documenting file and environment.
pub const HELP: &str = "Configuration (later sources win): built-in defaults; a YAML file given by --config or RDD_CONFIG with keys admin_addr, kubeconfig, log_level; the environment variables RDD_ADMIN_ADDR, RDD_KUBECONFIG, RDD_LOG_LEVEL; then flags.";
