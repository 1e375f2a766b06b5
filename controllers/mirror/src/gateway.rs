//! The docker-gateway client every mirror controller uses: a Unix-socket channel that reconnects
//! by itself, with the caller's trace context sent on each call.

use rdd_process::telemetry::TraceInterceptor;
use rdd_proto::DockerGatewayClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Gateway = DockerGatewayClient<InterceptedService<Channel, TraceInterceptor>>;

/// A client for the gateway serving on `socket`; nothing is dialled until the first call.
pub fn connect(socket: impl Into<std::path::PathBuf>) -> Gateway {
    DockerGatewayClient::with_interceptor(rdd_proto::unix_channel(socket), TraceInterceptor)
}

/// Docker said the object does not exist: "already done" for deletes, "raced a removal" for
/// inspects.
pub fn is_not_found(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::NotFound
}
