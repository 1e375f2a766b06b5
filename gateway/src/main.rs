use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use docker_gateway::{GatewayConfig, config::HELP};
use figment::providers::Serialized;
use rdd_process::instance::Instance;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// The docker-gateway: the one process that talks to the instance's Docker Engine, serving
/// engine calls and a fanned-out event stream to rdd's controllers over gRPC.
#[derive(Parser, Serialize)]
#[command(version, after_help = HELP)]
struct Args {
    /// YAML configuration file (also RDD_CONFIG).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Docker endpoint (unix:///path, tcp://host:port).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    docker_host: Option<String>,
    /// gRPC Unix socket to serve on.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    socket: Option<PathBuf>,
    /// Also serve gRPC on this TCP address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_addr: Option<SocketAddr>,
    /// PEM certificate of the TCP listener (with --tls-key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the TCP listener.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// PEM CA: TCP clients must present a certificate it signed (mutual TLS).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_ca: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_addr: Option<SocketAddr>,
    /// Log filter (tracing EnvFilter syntax), e.g. info or docker_gateway=debug.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    /// OTLP/gRPC endpoint for traces.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<String>,
    /// Messages buffered per subscriber before it must resync.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriber_buffer: Option<usize>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docker-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let inst = Instance::from_env().map_err(anyhow::Error::msg)?;
    let defaults = GatewayConfig::for_instance(&inst);
    let f = rdd_process::config::figment(&defaults, args.config.as_deref())?
        .merge(Serialized::defaults(&args));
    let cfg: GatewayConfig = rdd_process::config::extract(f)?;
    let _telemetry = rdd_process::telemetry::init(
        "docker-gateway",
        &cfg.log_level,
        cfg.otlp_endpoint.as_deref(),
    )?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    docker_gateway::run(cfg, shutdown)
        .await
        .context("docker-gateway failed")
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
