//! The one Docker connection. A loop owns it: connect (ping), anchor `since` to the daemon clock,
//! open the single event stream and feed it to the hub; when the stream breaks, report
//! `Disconnected`, back off (capped, exponential) and start over. Engine calls share the client of
//! the current session; an engine that is not running is a normal, quiet state.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::hub::HubMsg;
use crate::metrics::Metrics;

/// Where the Docker Engine listens.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(format!("docker_host {s:?}: empty socket path"));
            }
            Ok(Endpoint::Unix(PathBuf::from(p)))
        } else if let Some(a) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
        {
            if a.is_empty() {
                return Err(format!("docker_host {s:?}: empty address"));
            }
            Ok(Endpoint::Tcp(a.to_string()))
        } else {
            Err(format!(
                "docker_host {s:?}: expected unix:///path, tcp://host:port or http://host:port"
            ))
        }
    }

    fn client(&self, timeout: Duration) -> Result<Docker, bollard::errors::Error> {
        let secs = timeout.as_secs().max(1);
        match self {
            Endpoint::Unix(p) => {
                Docker::connect_with_unix(&p.to_string_lossy(), secs, bollard::API_DEFAULT_VERSION)
            }
            Endpoint::Tcp(a) => Docker::connect_with_http(a, secs, bollard::API_DEFAULT_VERSION),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The gateway's view of its Docker connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnState {
    pub connected: bool,
    /// Why not connected; names the endpoint.
    pub reason: String,
    /// Number of the current (or last) session; each successful connection increments it.
    pub session: u64,
}

pub struct Engine {
    endpoint: Endpoint,
    /// The client of the current session; None until the first connection (bollard refuses to
    /// build a Unix-socket client for a socket that does not exist yet).
    docker: RwLock<Option<Docker>>,
    state: watch::Sender<ConnState>,
    timeout: Duration,
    backoff: (Duration, Duration),
    metrics: Arc<Metrics>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Engine {
    pub fn new(
        endpoint: Endpoint,
        timeout: Duration,
        backoff: (Duration, Duration),
        metrics: Arc<Metrics>,
    ) -> Engine {
        let (state, _) = watch::channel(ConnState {
            connected: false,
            reason: format!("not yet connected to {endpoint}"),
            session: 0,
        });
        Engine {
            endpoint,
            docker: RwLock::new(None),
            state,
            timeout,
            backoff,
            metrics,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.subscribe()
    }

    fn docker(&self) -> Result<Docker, Status> {
        let d = match self.docker.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        d.ok_or_else(|| Status::unavailable(self.state.borrow().reason.clone()))
    }

    /// Run one Docker call with the call timeout, metrics and the gRPC status mapping.
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Status>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: std::future::Future<Output = Result<T, bollard::errors::Error>>,
    {
        let start = Instant::now();
        let docker = self.docker()?;
        self.metrics.docker_call_started(op);
        let r = match tokio::time::timeout(self.timeout, f(docker)).await {
            Err(_) => Err(Status::deadline_exceeded(format!(
                "Docker {op} at {} did not answer within {:?}",
                self.endpoint, self.timeout
            ))),
            Ok(Err(e)) => Err(crate::status::from_docker(op, &self.endpoint, e)),
            Ok(Ok(v)) => Ok(v),
        };
        let code = match &r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.metrics.docker_call(op, code, start.elapsed());
        r
    }

    /// A client for streaming calls (logs), which the caller times itself.
    pub fn stream_client(&self) -> Result<Docker, Status> {
        self.docker()
    }

    fn set_state(&self, st: ConnState) {
        self.metrics.set_connected(st.connected);
        self.state.send_if_modified(|cur| {
            if *cur == st {
                false
            } else {
                *cur = st;
                true
            }
        });
    }

    /// Ping, negotiate the API version and read the daemon clock. Returns the client and the
    /// `since` value for the event stream.
    async fn connect(&self) -> Result<(Docker, String), String> {
        if let Endpoint::Unix(p) = &self.endpoint
            && !p.exists()
        {
            return Err(format!(
                "Docker socket {} does not exist (is the engine running?)",
                p.display()
            ));
        }
        let fresh = self
            .endpoint
            .client(self.timeout)
            .map_err(|e| format!("Docker client for {}: {e}", self.endpoint))?;
        let ping = tokio::time::timeout(CONNECT_TIMEOUT, fresh.ping()).await;
        match ping {
            Err(_) => {
                return Err(format!(
                    "Docker at {} did not answer ping within 5s",
                    self.endpoint
                ));
            }
            Ok(Err(e)) => return Err(format!("cannot reach Docker at {}: {e}", self.endpoint)),
            Ok(Ok(_)) => {}
        }
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, fresh.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                return Err(format!(
                    "Docker at {}: version negotiation: {e}",
                    self.endpoint
                ));
            }
            Err(_) => {
                return Err(format!(
                    "Docker at {}: version negotiation timed out",
                    self.endpoint
                ));
            }
        };
        let since = match tokio::time::timeout(CONNECT_TIMEOUT, docker.info()).await {
            Ok(Ok(info)) => info.system_time.as_deref().and_then(since_from_daemon_time),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the daemon clock failed");
                None
            }
            Err(_) => {
                tracing::warn!("reading the daemon clock timed out");
                None
            }
        };
        let since = since.unwrap_or_else(|| {
            // R-ENG-D5: visible, because a host clock ahead of the daemon by more than the
            // margin would drop events.
            let t = chrono::Utc::now() - chrono::Duration::minutes(2);
            tracing::warn!(
                endpoint = %self.endpoint,
                "daemon clock unavailable; anchoring the event stream at host time minus 2 minutes"
            );
            format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
        });
        Ok((docker, since))
    }

    /// The connection loop; runs until the hub is gone.
    pub async fn run(self: Arc<Self>, hub: mpsc::Sender<HubMsg>) {
        let (min, max) = self.backoff;
        let mut backoff = min;
        let mut last_reason = String::new();
        let mut session = 0u64;
        loop {
            match self.connect().await {
                Ok((docker, since)) => {
                    if let Ok(mut d) = self.docker.write() {
                        *d = Some(docker.clone());
                    }
                    session += 1;
                    backoff = min;
                    tracing::info!(endpoint = %self.endpoint, session, "connected to Docker");
                    let st = ConnState {
                        connected: true,
                        reason: String::new(),
                        session,
                    };
                    self.set_state(st.clone());
                    self.metrics.session_started();
                    if hub.send(HubMsg::State(st)).await.is_err() {
                        return;
                    }
                    let reason = self.pump(&docker, since, session, &hub).await;
                    let Some(reason) = reason else { return };
                    tracing::warn!(endpoint = %self.endpoint, session, %reason, "Docker connection lost");
                    last_reason = reason.clone();
                    let st = ConnState {
                        connected: false,
                        reason,
                        session,
                    };
                    self.set_state(st.clone());
                    if hub.send(HubMsg::State(st)).await.is_err() {
                        return;
                    }
                }
                Err(reason) => {
                    // Quiet while nothing changes: one line per new reason.
                    if reason != last_reason {
                        tracing::info!(endpoint = %self.endpoint, %reason, "Docker not available");
                        last_reason = reason.clone();
                    } else {
                        tracing::debug!(%reason, "Docker still not available");
                    }
                    let st = ConnState {
                        connected: false,
                        reason,
                        session,
                    };
                    if *self.state.borrow() != st {
                        self.set_state(st.clone());
                        if hub.send(HubMsg::State(st)).await.is_err() {
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// Forward the session's events to the hub; returns why the stream ended, or None when the
    /// hub is gone (shutdown).
    async fn pump(
        &self,
        docker: &Docker,
        since: String,
        session: u64,
        hub: &mpsc::Sender<HubMsg>,
    ) -> Option<String> {
        let opts = EventsOptions {
            since: Some(since),
            until: None,
            filters: None,
        };
        let mut stream = docker.events(Some(opts));
        loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    if hub
                        .send(HubMsg::Event(Box::new(ev), session))
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
                Some(Err(e)) => {
                    return Some(format!("event stream from {} failed: {e}", self.endpoint));
                }
                None => return Some(format!("event stream from {} closed", self.endpoint)),
            }
        }
    }
}

/// Docker's `SystemTime` (RFC 3339 with fractional seconds) as the `since` query value.
fn since_from_daemon_time(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(format!(
        "{}.{:09}",
        t.timestamp(),
        t.timestamp_subsec_nanos()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:///run/d.sock"),
            Ok(Endpoint::Unix("/run/d.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375"),
            Ok(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert!(Endpoint::parse("npipe:////./pipe/x").is_err());
        assert!(Endpoint::parse("unix://").is_err());
    }

    #[test]
    fn daemon_clock_keeps_nanoseconds() {
        assert_eq!(
            since_from_daemon_time("2026-11-23T10:00:00.123456789+01:00").as_deref(),
            Some("1795424400.123456789")
        );
        assert_eq!(since_from_daemon_time(""), None);
        assert_eq!(since_from_daemon_time("yesterday"), None);
    }
}
