//! The gateway's configuration: defaults derived from the instance, then the YAML file
//! (`--config`/`RDD_CONFIG`), then `RDD_*` environment variables, then flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use rdd_process::instance::Instance;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GatewayConfig {
    /// The Docker endpoint: `unix:///path/docker.sock`, `tcp://host:port` or `http://host:port`.
    pub docker_host: String,
    /// The gRPC Unix socket the gateway serves on (created with mode 0600).
    pub socket: PathBuf,
    /// Optional TCP listener for the gRPC service (cluster deployments: the controllers of the
    /// node reach their gateway over it, with mutual TLS).
    pub listen_addr: Option<SocketAddr>,
    /// PEM certificate and key for `listen_addr`; both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): when set, `listen_addr` accepts only clients presenting a
    /// certificate signed by one of them (mutual TLS); needs `tls_cert`/`tls_key`.
    pub tls_client_ca: Option<PathBuf>,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin_addr: SocketAddr,
    /// tracing `EnvFilter` syntax.
    pub log_level: String,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; `OTEL_EXPORTER_OTLP_ENDPOINT` also works.
    pub otlp_endpoint: Option<String>,
    /// Messages buffered per subscriber before it is declared overflowed and told to resync.
    pub subscriber_buffer: usize,
    /// Timeout of each Docker call except streams (seconds).
    pub docker_timeout_seconds: u64,
    /// Reconnect backoff bounds (milliseconds).
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

impl GatewayConfig {
    pub fn for_instance(inst: &Instance) -> GatewayConfig {
        GatewayConfig {
            docker_host: inst.docker_host(),
            socket: inst.gateway_socket(),
            listen_addr: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_level: "info".into(),
            otlp_endpoint: None,
            subscriber_buffer: 1024,
            docker_timeout_seconds: 30,
            reconnect_min_ms: 250,
            reconnect_max_ms: 10_000,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.subscriber_buffer < 2 {
            return Err("subscriber_buffer must be at least 2".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return Err("reconnect_min_ms must be > 0 and <= reconnect_max_ms".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key must be given together".into());
        }
        if self.tls_cert.is_some() && self.listen_addr.is_none() {
            return Err("tls_cert/tls_key need listen_addr".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("tls_client_ca needs tls_cert and tls_key".into());
        }
        crate::engine::Endpoint::parse(&self.docker_host).map(|_| ())
    }
}

pub const HELP: &str = "\
Configuration (later sources win): defaults derived from the instance (RDD_INSTANCE); a YAML file \
given by --config or RDD_CONFIG; RDD_* environment variables; then flags. Keys (environment \
variable in brackets): docker_host [RDD_DOCKER_HOST] Docker endpoint, default \
unix://<short dir>/docker.sock; socket [RDD_SOCKET] gRPC Unix socket, default \
<instance dir>/docker-gateway.sock; listen_addr [RDD_LISTEN_ADDR] optional TCP listener; tls_cert, \
tls_key [RDD_TLS_CERT, RDD_TLS_KEY] PEM certificate and key for it; tls_client_ca \
[RDD_TLS_CLIENT_CA] PEM CA: with it, TCP clients must present a certificate it signed (mutual \
TLS); admin_addr [RDD_ADMIN_ADDR] /healthz /readyz \
/metrics, default 127.0.0.1:0; log_level [RDD_LOG_LEVEL] default info; otlp_endpoint \
[RDD_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT] OTLP/gRPC trace export; subscriber_buffer \
[RDD_SUBSCRIBER_BUFFER] default 1024; docker_timeout_seconds [RDD_DOCKER_TIMEOUT_SECONDS] default \
30; reconnect_min_ms, reconnect_max_ms [RDD_RECONNECT_MIN_MS, RDD_RECONNECT_MAX_MS] default 250 \
and 10000.";
