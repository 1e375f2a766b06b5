//! The `logs` endpoint of controller `engine` (controllers.md §4.15), served on this process's
//! passthrough socket (`Instance::passthrough_socket("engine")`); the API server relays
//! `/passthrough/engine/logs/<id>` to it after authenticating and authorizing the caller.
//!
//! Every check answers plain HTTP before the WebSocket upgrade, in this order:
//!
//! | step | failure | answer |
//! |---|---|---|
//! | id matches `^[0-9a-fA-F]+$` | no | 400 `Invalid container ID` |
//! | session knows NS | no App / not mirroring | 503 `Docker watcher not running` |
//! | Container `<id>` in NS | NotFound / other | 404 `Container not found` / 500 `Failed to get container` |
//! | `follow` parses as a boolean (default true) | no | 400 `Invalid follow parameter` |
//! | `tail` is `all` or a count (default all) | no | 400 `Invalid tail parameter` |
//! | the engine session is connected | no | 503 `Docker watcher not running` |
//! | WebSocket upgrade requested | no | 400 `WebSocket upgrade required` |
//! | gateway inspect, then the log stream opens | NotFound / InvalidArgument / other | 404 / 400 / 500 |
//!
//! Then one binary message per chunk: the gateway already separates a TTY container's raw
//! console bytes from the demultiplexed stdout/stderr payloads of the others, so each chunk's
//! payload is sent as it is. Ping every 10 s; read deadline 60 s refreshed by any frame (pongs
//! included); messages over 4096 bytes from the client end the stream; each write has a 10 s
//! deadline. At the end close 1000 `Closing connection` (1 s for the handshake); a gateway error
//! closes 1011 `failed to copy container logs: …`.
//!
//! Memory stays bounded whatever the client does: one message is written at a time (the next
//! chunk is not read from the gateway before the last one is flushed), and a client that stops
//! reading fails the write deadline and ends the stream.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube::Api;
use rdd_api::containers::Container;
use rdd_mirror::gateway::Gateway;
use rdd_mirror::session::EngineState;
use rdd_proto::v1::{ContainerLogsRequest, ContainerRef};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};
use tokio_util::sync::CancellationToken;

const PING_EVERY: Duration = Duration::from_secs(10);
const READ_DEADLINE: Duration = Duration::from_secs(60);
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
const CLOSE_GRACE: Duration = Duration::from_secs(1);
const READ_LIMIT: usize = 4096;

/// What the endpoint reads: the Container mirrors (API), the gateway, and the session state.
#[derive(Clone)]
pub struct Logs {
    pub client: kube::Client,
    pub gateway: Gateway,
    pub state: watch::Receiver<EngineState>,
}

type Resp = Response<Full<Bytes>>;

fn plain(code: StatusCode, text: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The parsed query of a logs request.
#[derive(Debug, PartialEq, Eq)]
struct Params {
    follow: bool,
    tail: Option<u64>,
}

fn query<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn params(q: &[(String, String)]) -> Result<Params, &'static str> {
    let follow = match query(q, "follow") {
        None => true,
        Some(v) => parse_bool(v).ok_or("Invalid follow parameter")?,
    };
    let tail = match query(q, "tail") {
        None | Some("") | Some("all") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| "Invalid tail parameter")?),
    };
    Ok(Params { follow, tail })
}

fn is_hex_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn status_code(s: &tonic::Status) -> StatusCode {
    match s.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn wants_websocket(req: &Request<Incoming>) -> Option<String> {
    let upgrade = req.headers().get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    let key = req.headers().get("sec-websocket-key")?.to_str().ok()?;
    Some(derive_accept_key(key.as_bytes()))
}

impl Logs {
    /// Answer one request on the passthrough socket.
    pub async fn handle(&self, mut req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        let Some(id) = path.strip_prefix("/logs/") else {
            return plain(StatusCode::NOT_FOUND, "Not found");
        };
        if !is_hex_id(id) {
            return plain(StatusCode::BAD_REQUEST, "Invalid container ID");
        }
        let state = self.state.borrow().clone();
        let Some(ns) = state.ns.filter(|_| state.wanted) else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Docker watcher not running",
            );
        };
        let api: Api<Container> = Api::namespaced(self.client.clone(), &ns);
        match api.get_opt(id).await {
            Ok(Some(_)) => {}
            Ok(None) => return plain(StatusCode::NOT_FOUND, "Container not found"),
            Err(e) => {
                tracing::warn!(error = %e, %id, "reading the Container for its logs");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "Failed to get container");
            }
        }
        let q: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let p = match params(&q) {
            Ok(p) => p,
            Err(msg) => return plain(StatusCode::BAD_REQUEST, msg),
        };
        if !self.state.borrow().connected {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Docker watcher not running",
            );
        }
        let Some(accept) = wants_websocket(&req) else {
            return plain(StatusCode::BAD_REQUEST, "WebSocket upgrade required");
        };
        let mut gw = self.gateway.clone();
        if let Err(s) = gw.inspect_container(ContainerRef { id: id.into() }).await {
            return plain(status_code(&s), s.message());
        }
        let stream = match gw
            .container_logs(ContainerLogsRequest {
                id: id.into(),
                follow: p.follow,
                tail: p.tail,
                stdout: true,
                stderr: true,
                ..Default::default()
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => return plain(status_code(&s), s.message()),
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let id = id.to_string();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(io) => {
                    let cfg = WebSocketConfig::default()
                        .max_message_size(Some(READ_LIMIT))
                        .max_frame_size(Some(READ_LIMIT))
                        .write_buffer_size(0);
                    let ws =
                        WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(cfg))
                            .await;
                    stream_logs(ws, stream, &id).await;
                }
                Err(e) => tracing::debug!(error = %e, %id, "logs upgrade failed"),
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
        h.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&accept) {
            h.insert("sec-websocket-accept", v);
        }
        r
    }
}

/// Copy the gateway's chunks into the socket until the stream ends, fails, or the client goes.
async fn stream_logs<S>(
    ws: WebSocketStream<S>,
    mut logs: tonic::Streaming<rdd_proto::v1::LogChunk>,
    id: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let gone = CancellationToken::new();
    let reader_gone = gone.clone();
    // Reads only to see pongs, closes and errors; any failure or silence past the deadline
    // cancels the stream.
    let reader = tokio::spawn(async move {
        loop {
            match tokio::time::timeout(READ_DEADLINE, incoming.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
        reader_gone.cancel();
    });
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let close = loop {
        tokio::select! {
            _ = gone.cancelled() => break None,
            _ = ping.tick() => {
                if !send(&mut sink, Message::Ping(Bytes::new())).await {
                    break None;
                }
            }
            msg = logs.message() => match msg {
                Ok(Some(chunk)) => {
                    if chunk.data.is_empty() {
                        continue;
                    }
                    if !send(&mut sink, Message::Binary(Bytes::from(chunk.data))).await {
                        tracing::debug!(%id, "logs client did not take a message within the write deadline");
                        break None;
                    }
                }
                Ok(None) => break Some((CloseCode::Normal, "Closing connection".to_string())),
                Err(s) => break Some((
                    CloseCode::Error,
                    format!("failed to copy container logs: {}", s.message()),
                )),
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if send(&mut sink, Message::Close(Some(frame))).await {
            // The client's close answer ends the reader.
            let _ = tokio::time::timeout(CLOSE_GRACE, gone.cancelled()).await;
        }
    }
    reader.abort();
}

async fn send<S>(sink: &mut S, m: Message) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    matches!(
        tokio::time::timeout(WRITE_DEADLINE, sink.send(m)).await,
        Ok(Ok(()))
    )
}

/// Serve the endpoint on `socket` until `shutdown`. A stale socket file of an earlier run is
/// replaced; the socket is the owner's only (the API server runs as the same user).
pub async fn serve(
    socket: &Path,
    logs: Arc<Logs>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), "serving the logs endpoint");
    loop {
        let (conn, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting on the passthrough socket");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let logs = logs.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let logs = logs.clone();
                async move { Ok::<_, std::convert::Infallible>(logs.handle(req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(conn), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "passthrough connection ended");
            }
        });
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ids_must_be_hex() {
        assert!(is_hex_id("0123456789abcdefABCDEF"));
        assert!(!is_hex_id(""));
        assert!(!is_hex_id("not-hex"));
        assert!(!is_hex_id("abc/def"));
    }

    #[test]
    fn follow_defaults_to_true_and_parses_like_go() {
        assert_eq!(
            params(&q(&[])),
            Ok(Params {
                follow: true,
                tail: None
            })
        );
        assert_eq!(
            params(&q(&[("follow", "F"), ("tail", "2")])),
            Ok(Params {
                follow: false,
                tail: Some(2)
            })
        );
        assert_eq!(
            params(&q(&[("follow", "yes")])),
            Err("Invalid follow parameter")
        );
        assert_eq!(params(&q(&[("tail", "all")])).map(|p| p.tail), Ok(None));
        assert_eq!(params(&q(&[("tail", "-1")])), Err("Invalid tail parameter"));
    }
}
