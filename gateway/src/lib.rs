//! docker-gateway: the only rdd process that talks to the Docker Engine. It keeps one
//! connection (one event stream) to the instance's Docker socket and serves engine calls and a
//! fanned-out event stream over gRPC (`rdd.gateway.v1`, see `proto/` and `docs/gateway.md`).
//!
//! - [`engine`]: the connection loop (connect, daemon-clock `since`, reconnect with backoff) and
//!   the call wrapper;
//! - [`hub`]: fan-out with per-subscriber buffers and the Synced/Resync contract;
//! - [`service`]: the gRPC service; [`convert`]: Docker answers as messages;
//! - [`status`]: Docker errors as gRPC codes; [`metrics`]: Prometheus metrics.

pub mod config;
pub mod convert;
pub mod engine;
pub mod hub;
pub mod metrics;
pub mod selector;
pub mod service;
pub mod status;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use rdd_proto::DockerGatewayServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

pub use config::GatewayConfig;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Process(#[from] rdd_process::ProcessError),
    #[error("socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("TLS file {path}: {source}")]
    Tls {
        path: String,
        source: std::io::Error,
    },
}

/// The TLS configuration of the TCP listener: the server identity, and with `tls_client_ca` the
/// CA every client certificate must chain to (a client without one, or with one from another
/// CA, fails the handshake).
fn server_tls(
    cfg: &GatewayConfig,
) -> Result<Option<tonic::transport::ServerTlsConfig>, GatewayError> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| GatewayError::Tls {
            path: p.display().to_string(),
            source,
        })
    };
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(read(cert)?, read(key)?),
    );
    if let Some(ca) = &cfg.tls_client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

/// Serve until `shutdown` is cancelled; subscriber streams are ended so shutdown is prompt.
pub async fn run(cfg: GatewayConfig, shutdown: CancellationToken) -> Result<(), GatewayError> {
    cfg.validate().map_err(GatewayError::Config)?;
    let lock_path = cfg.socket.with_extension("lock");
    let _lock = rdd_process::lock::acquire(&lock_path, "docker-gateway")?;

    let metrics = Arc::new(metrics::Metrics::new());
    let endpoint = engine::Endpoint::parse(&cfg.docker_host).map_err(GatewayError::Config)?;
    let engine = Arc::new(engine::Engine::new(
        endpoint.clone(),
        Duration::from_secs(cfg.docker_timeout_seconds.max(1)),
        (
            Duration::from_millis(cfg.reconnect_min_ms),
            Duration::from_millis(cfg.reconnect_max_ms),
        ),
        metrics.clone(),
    ));

    // Bind first: a gateway that cannot serve should fail before it dials Docker.
    let socket_err = |source| GatewayError::Socket {
        path: cfg.socket.display().to_string(),
        source,
    };
    if let Some(dir) = cfg.socket.parent() {
        std::fs::create_dir_all(dir).map_err(socket_err)?;
    }
    // We hold the lock, so a socket file left here belongs to a gateway that is gone.
    match std::fs::remove_file(&cfg.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_err(e)),
    }
    let listener = UnixListener::bind(&cfg.socket).map_err(socket_err)?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_err)?;

    let (hub_tx, hub_rx) = tokio::sync::mpsc::channel(4096);
    tokio::spawn(hub::run(hub_rx, endpoint.to_string(), metrics.clone()));
    tokio::spawn(engine.clone().run(hub_tx.clone()));

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let mut conn = engine.state();
    tokio::spawn(async move {
        loop {
            let up = conn.borrow_and_update().connected;
            let status = if up {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(service::SERVICE, status).await;
            if conn.changed().await.is_err() {
                return;
            }
        }
    });

    let health = rdd_process::admin::Health::default();
    let m = metrics.clone();
    let admin =
        rdd_process::admin::serve(cfg.admin_addr, Arc::new(move || m.encode()), health.clone())
            .await?;

    let gw = service::Gateway {
        engine,
        hub: hub_tx,
        metrics,
        buffer: cfg.subscriber_buffer,
        shutdown: shutdown.clone(),
    };
    let grpc = DockerGatewayServer::new(gw);

    let mut servers = tokio::task::JoinSet::new();
    if let Some(addr) = cfg.listen_addr {
        let mut b = tonic::transport::Server::builder();
        if let Some(tls) = server_tls(&cfg)? {
            b = b.tls_config(tls)?;
        }
        let router = b
            .add_service(health_service.clone())
            .add_service(grpc.clone());
        let stop = shutdown.clone();
        servers.spawn(async move {
            router
                .serve_with_shutdown(addr, async move { stop.cancelled().await })
                .await
        });
        tracing::info!(
            %addr,
            tls = cfg.tls_cert.is_some(),
            client_certificates = cfg.tls_client_ca.is_some(),
            "serving gRPC over TCP"
        );
    }
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(grpc);
    let stop = shutdown.clone();
    let incoming = UnixListenerStream::new(listener);
    servers.spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await })
            .await
    });
    health.set_ready(true);
    tracing::info!(
        socket = %cfg.socket.display(),
        docker = %endpoint,
        admin = %admin,
        "docker-gateway is serving"
    );
    let mut result = Ok(());
    while let Some(r) = servers.join_next().await {
        if let Ok(Err(e)) = r {
            shutdown.cancel();
            result = Err(GatewayError::Serve(e));
        }
    }
    let _ = std::fs::remove_file(&cfg.socket);
    result
}
