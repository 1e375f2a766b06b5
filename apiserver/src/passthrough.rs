//! Controller endpoints reachable through the API server (controllers.md §4.15):
//! `/passthrough/<controller>/<endpoint>/<rest>` is relayed, after the usual authentication and
//! authorization, to the Unix socket the process serving `<controller>` listens on, as
//! `/<endpoint>/<rest>` with the query kept.
//!
//! The route table is filled by whoever starts the processes (`rdd svc serve`'s supervisor
//! knows its children), so the API server has no knowledge of any endpoint: it relays plain
//! HTTP answers as they come, and an upgrade (WebSocket) as raw bytes in both directions with
//! fixed-size buffers — a client that stops reading stalls the upstream through TCP flow
//! control instead of growing this process's memory.
//!
//! | request | answer |
//! |---|---|
//! | no route for `<controller>` | 404 Status `NotFound` |
//! | route, socket does not answer | 503 Status `ServiceUnavailable` |
//! | upstream answers without an upgrade | that answer (status, headers, body streamed) |
//! | upstream answers `101` | `101` with its headers, then bytes relayed until either side closes |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

use crate::error::ApiError;
use crate::request::{Body, error_response};

/// Path prefix of relayed requests.
pub const PREFIX: &str = "/passthrough/";

/// Controller name → the Unix socket of the process serving its endpoints.
#[derive(Clone, Debug, Default)]
pub struct Routes(Arc<RwLock<BTreeMap<String, PathBuf>>>);

impl Routes {
    pub fn register(&self, controller: &str, socket: PathBuf) {
        let mut m = match self.0.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.insert(controller.to_string(), socket);
    }

    pub fn remove(&self, controller: &str) {
        let mut m = match self.0.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.remove(controller);
    }

    pub fn get(&self, controller: &str) -> Option<PathBuf> {
        match self.0.read() {
            Ok(m) => m.get(controller).cloned(),
            Err(p) => p.into_inner().get(controller).cloned(),
        }
    }
}

/// Whether `path` (decoded) is a passthrough request.
pub fn is_passthrough(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// `(controller, upstream path and query)` of a raw request URI, or None when it names no
/// controller and endpoint.
fn split(uri: &http::Uri) -> Option<(String, String)> {
    let rest = uri.path().strip_prefix(PREFIX)?;
    let (controller, tail) = rest.split_once('/')?;
    if controller.is_empty() || tail.is_empty() {
        return None;
    }
    let mut up = format!("/{tail}");
    if let Some(q) = uri.query() {
        up.push('?');
        up.push_str(q);
    }
    Some((controller.to_string(), up))
}

/// Headers that describe one hop and are not forwarded, except the upgrade pair when the client
/// asks for one (RFC 9110 §7.6.1). The caller's credentials stay here: the upstream trusts the
/// API server's check, and never sees a token it could replay.
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "impersonate-user",
    "impersonate-group",
    "impersonate-uid",
];

fn not_found(path: &str) -> Response<Body> {
    error_response(&ApiError::new(
        404,
        "NotFound",
        format!("no controller serves {path}"),
    ))
}

/// Relay one authenticated, authorized request.
pub async fn relay(routes: &Routes, mut req: Request<Incoming>) -> Response<Body> {
    let Some((controller, up_path)) = split(req.uri()) else {
        return not_found(req.uri().path());
    };
    let Some(socket) = routes.get(&controller) else {
        return not_found(req.uri().path());
    };
    let stream = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%controller, socket = %socket.display(), error = %e, "passthrough upstream unreachable");
            return error_response(&ApiError::unavailable(format!(
                "controller {controller} is not serving its endpoints"
            )));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => {
            return error_response(&ApiError::unavailable(format!(
                "controller {controller}: {e}"
            )));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "passthrough upstream connection ended");
        }
    });

    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut up = Request::builder().method(req.method().clone()).uri(up_path);
    for (k, v) in req.headers() {
        if !HOP.contains(&k.as_str()) {
            up = up.header(k, v);
        }
    }
    up = up.header(header::HOST, "passthrough");
    if wants_upgrade && let Some(u) = req.headers().get(header::UPGRADE) {
        up = up
            .header(header::UPGRADE, u)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let up = match up.body(req.into_body()) {
        Ok(r) => r,
        Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
    };
    let mut resp = match sender.send_request(up).await {
        Ok(r) => r,
        Err(e) => {
            return error_response(&ApiError::unavailable(format!(
                "controller {controller}: {e}"
            )));
        }
    };

    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return error_response(&ApiError::internal(
                "the controller switched protocols unasked",
            ));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let mut out = Response::builder().status(http::StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        tokio::spawn(async move {
            let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                (Ok(c), Ok(u)) => (c, u),
                (c, u) => {
                    tracing::debug!(client = ?c.err(), upstream = ?u.err(), "passthrough upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            // Fixed 8 KiB buffers each way: the relay's memory does not depend on the stream.
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "passthrough relay ended");
            }
        });
        return out
            .body(crate::request::full(Bytes::new()))
            .unwrap_or_else(|_| {
                error_response(&ApiError::internal("building the upgrade answer"))
            });
    }

    let (parts, body) = resp.into_parts();
    let mut out = Response::from_parts(parts, streamed(body));
    for h in ["connection", "keep-alive", "transfer-encoding"] {
        out.headers_mut().remove(h);
    }
    out
}

/// The upstream body streamed through; an upstream error ends it (the client sees a truncated
/// body, as with any broken connection).
fn streamed(body: Incoming) -> Body {
    let frames = futures::stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        match body.frame().await {
            Some(Ok(f)) => Some((Ok::<Frame<Bytes>, std::convert::Infallible>(f), Some(body))),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "passthrough upstream body ended with an error");
                None
            }
            None => None,
        }
    });
    StreamBody::new(frames).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_controller_and_keeps_the_query() {
        let u: http::Uri = "/passthrough/engine/logs/abc?tail=2&follow=false"
            .parse()
            .unwrap();
        assert_eq!(
            split(&u),
            Some(("engine".into(), "/logs/abc?tail=2&follow=false".into()))
        );
        let u: http::Uri = "/passthrough/engine".parse().unwrap();
        assert_eq!(split(&u), None);
        let u: http::Uri = "/passthrough//logs".parse().unwrap();
        assert_eq!(split(&u), None);
    }

    #[test]
    fn routes_register_and_remove() {
        let r = Routes::default();
        r.register("engine", "/s".into());
        assert_eq!(r.get("engine"), Some(PathBuf::from("/s")));
        r.remove("engine");
        assert_eq!(r.get("engine"), None);
    }
}
