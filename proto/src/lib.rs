//! The docker-gateway protocol, version 1. The service and message documentation is in
//! `rdd/gateway/v1/gateway.proto`; the Resync contract in `docs/gateway.md`.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rdd.gateway.v1");
}

pub use v1::docker_gateway_client::DockerGatewayClient;
pub use v1::docker_gateway_server::{DockerGateway, DockerGatewayServer};

/// A channel to a gateway serving on a Unix socket. The channel reconnects by itself when the
/// gateway restarts; the URI is a placeholder that tonic requires but never dials.
pub fn unix_channel(path: impl Into<std::path::PathBuf>) -> tonic::transport::Channel {
    unix_channel_with(
        tonic::transport::Endpoint::from_static("http://docker-gateway.invalid"),
        path,
    )
}

/// Like [`unix_channel`] with a custom endpoint configuration (window sizes, timeouts).
pub fn unix_channel_with(
    endpoint: tonic::transport::Endpoint,
    path: impl Into<std::path::PathBuf>,
) -> tonic::transport::Channel {
    let path: std::path::PathBuf = path.into();
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move {
            let s = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    }))
}
