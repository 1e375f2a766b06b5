//! The docker-gateway client every mirror controller uses: a channel that reconnects by itself,
//! with the caller's trace context sent on each call. On a desktop the gateway serves on a Unix
//! socket (`gateway_socket`); in a cluster each node's gateway serves over TCP with mutual TLS
//! (`gateway_addr` and the `gateway_tls_*` files, docs/deploy.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdd_process::telemetry::TraceInterceptor;
use rdd_proto::DockerGatewayClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::MirrorError;

pub type Gateway = DockerGatewayClient<InterceptedService<Channel, TraceInterceptor>>;

/// A client for the gateway serving on `socket`; nothing is dialled until the first call.
pub fn connect(socket: impl Into<std::path::PathBuf>) -> Gateway {
    DockerGatewayClient::with_interceptor(rdd_proto::unix_channel(socket), TraceInterceptor)
}

/// How a controller reaches a gateway over TCP.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TcpTarget {
    /// `https://host:port` (TLS) or `http://host:port` (plain, for a trusted network only).
    pub addr: String,
    /// PEM CA certificate(s) the gateway's certificate must chain to; required for `https`.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key presented to the gateway (mutual TLS); both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the gateway's certificate must carry; default the host of `addr`.
    pub server_name: Option<String>,
}

impl TcpTarget {
    /// The TLS configuration this target asks for, checked before anything is dialled: a wrong
    /// combination would otherwise surface as every call failing.
    fn tls(&self) -> Result<Option<ClientTlsConfig>, MirrorError> {
        let bad = |m: String| MirrorError::Other(format!("gateway_addr {}: {m}", self.addr));
        let https = self.addr.starts_with("https://");
        if !https && !self.addr.starts_with("http://") {
            return Err(bad("must start with https:// or http://".into()));
        }
        let any_tls = self.ca.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.server_name.is_some();
        if !https {
            // tonic would silently dial in plain text with a TLS configuration on an http URI.
            return if any_tls {
                Err(bad("the gateway_tls_* keys need an https:// address".into()))
            } else {
                Ok(None)
            };
        }
        let Some(ca) = &self.ca else {
            return Err(bad(
                "an https:// address needs gateway_tls_ca (the CA of the gateway's certificate)"
                    .into(),
            ));
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(bad(
                    "gateway_tls_cert and gateway_tls_key must be given together".into(),
                ));
            }
        }
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(Some(tls))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, MirrorError> {
    std::fs::read(path)
        .map_err(|e| MirrorError::Other(format!("gateway TLS file {}: {e}", path.display())))
}

/// A client for a gateway serving over TCP; nothing is dialled until the first call, and the
/// channel reconnects by itself (a restarted gateway pod on the node).
pub fn connect_tcp(target: &TcpTarget) -> Result<Gateway, MirrorError> {
    let tls = target.tls()?;
    let mut endpoint = Endpoint::from_shared(target.addr.clone())
        .map_err(|e| MirrorError::Other(format!("gateway_addr {}: {e}", target.addr)))?
        .connect_timeout(Duration::from_secs(5))
        // A gateway pod that vanished without closing its connections (node network change) is
        // noticed by the HTTP/2 pings, and the event stream is reopened.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| MirrorError::Other(format!("gateway TLS: {e}")))?;
    }
    Ok(DockerGatewayClient::with_interceptor(
        endpoint.connect_lazy(),
        TraceInterceptor,
    ))
}

/// Docker said the object does not exist: "already done" for deletes, "raced a removal" for
/// inspects.
pub fn is_not_found(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: &str) -> TcpTarget {
        TcpTarget {
            addr: addr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn plain_http_needs_no_tls_and_refuses_tls_files() {
        assert!(target("http://gw:9443").tls().unwrap().is_none());
        let t = TcpTarget {
            ca: Some("/ca.crt".into()),
            ..target("http://gw:9443")
        };
        let e = t.tls().unwrap_err().to_string();
        assert!(e.contains("need an https:// address"), "{e}");
    }

    #[test]
    fn https_needs_a_ca_and_a_cert_with_its_key() {
        let e = target("https://gw:9443").tls().unwrap_err().to_string();
        assert!(e.contains("needs gateway_tls_ca"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "read here, parsed when the channel is built").unwrap();
        let t = TcpTarget {
            ca: Some(ca.clone()),
            cert: Some(ca.clone()),
            ..target("https://gw:9443")
        };
        let e = t.tls().unwrap_err().to_string();
        assert!(e.contains("must be given together"), "{e}");
        let t = TcpTarget {
            ca: Some(dir.path().join("missing.crt")),
            ..target("https://gw:9443")
        };
        let e = t.tls().unwrap_err().to_string();
        assert!(e.contains("missing.crt"), "{e}");
        let t = TcpTarget {
            ca: Some(ca),
            ..target("https://gw:9443")
        };
        assert!(t.tls().unwrap().is_some());
    }

    #[test]
    fn an_address_without_a_scheme_is_refused() {
        let e = target("gw:9443").tls().unwrap_err().to_string();
        assert!(e.contains("https:// or http://"), "{e}");
    }
}
