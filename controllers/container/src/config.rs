//! Configuration: built-in defaults (derived from the instance), a YAML file (`--config` or
//! `RDD_CONFIG`), `RDD_*` environment variables, then flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use rdd_process::instance::Instance;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin_addr: SocketAddr,
    /// Kubeconfig of this controller's identity; standard discovery when absent.
    pub kubeconfig: Option<PathBuf>,
    /// The docker-gateway's gRPC Unix socket.
    pub gateway_socket: PathBuf,
    /// Mirror only containers matching this equality label selector (`a=b,c`); empty: all.
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
            label_selector: String::new(),
            sync_concurrency: 16,
            sweep_wait_seconds: 30,
            log_level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

pub const HELP: &str = "\
Configuration (later sources win): defaults derived from the instance (RDD_INSTANCE); a YAML file \
given by --config or RDD_CONFIG; RDD_* environment variables; then flags. Keys (environment \
variable in brackets): admin_addr [RDD_ADMIN_ADDR] /healthz /readyz /metrics, default \
127.0.0.1:0; kubeconfig [RDD_KUBECONFIG] this controller's kubeconfig (`rdd svc token create \
--controller container-controller`), default: KUBECONFIG / in-cluster discovery; gateway_socket \
[RDD_GATEWAY_SOCKET] default <instance dir>/docker-gateway.sock; label_selector \
[RDD_LABEL_SELECTOR] mirror only matching containers (equality terms), default all; \
sync_concurrency [RDD_SYNC_CONCURRENCY] default 16; sweep_wait_seconds [RDD_SWEEP_WAIT_SECONDS] \
default 30; log_level [RDD_LOG_LEVEL] default info; otlp_endpoint [RDD_OTLP_ENDPOINT, or \
OTEL_EXPORTER_OTLP_ENDPOINT] OTLP/gRPC trace export.";
