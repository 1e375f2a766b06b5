//! The server process: state, TLS listener, authentication and routing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Tokens, UserInfo};
use crate::builtin::{self, Schemas};
use crate::error::ApiError;
use crate::registry::{Registry, Resource};
use crate::request::{Body, Ctx, Query, error_response, json_response, text_response};
use crate::storage::{Store, StoreOptions};
use crate::tls::Pki;
use crate::{crd, discovery, handlers, lifecycle, openapi};

pub const MAX_BODY: usize = 3 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Config {
    /// Instance directory: database, TLS material, tokens.
    pub dir: PathBuf,
    pub bind: IpAddr,
    /// Desired port; when busy (or 0) a free port is taken.
    pub port: u16,
    pub sync_full: bool,
    pub max_inflight: usize,
    pub max_watches: usize,
    /// Test switch: answer discovery in the legacy form only.
    pub disable_aggregated_discovery: bool,
    /// Test switch: refuse `sendInitialEvents` with 422, forcing clients to list+watch.
    pub reject_send_initial_events: bool,
    /// How often history is compacted, and how many newest revisions compaction always keeps.
    pub compaction_interval: std::time::Duration,
    pub compaction_keep: i64,
    /// How long the garbage collector lets a burst of deletions settle before a pass (and
    /// waits before its start-up pass). Test switch: a long delay holds collection back.
    pub gc_delay: std::time::Duration,
    /// Objects created at start-up when missing (and reconciled, for RBAC objects the server
    /// owns): `rdd svc` passes the controller identities declared in `deploy/rbac`.
    pub manifests: Vec<serde_json::Value>,
    /// Controller endpoints relayed under `/passthrough/` (filled by the supervisor, which
    /// knows which process serves which controller).
    pub passthrough: crate::passthrough::Routes,
}

impl Config {
    pub fn new(dir: PathBuf, port: u16) -> Config {
        Config {
            dir,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            sync_full: false,
            max_inflight: 400,
            max_watches: 10_000,
            disable_aggregated_discovery: false,
            reject_send_initial_events: false,
            compaction_interval: std::time::Duration::from_secs(300),
            compaction_keep: 1000,
            gc_delay: std::time::Duration::from_millis(100),
            manifests: Vec::new(),
            passthrough: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
}

pub struct State {
    pub config: Config,
    pub store: Arc<Store>,
    registry: RwLock<Arc<Registry>>,
    pub builtins: Vec<Resource>,
    pub schemas: Schemas,
    pub tokens: Tokens,
    /// RBAC: the in-memory index of roles and bindings every request is checked against.
    pub authz: crate::authz::Authorizer,
    ready: AtomicBool,
    inflight: Semaphore,
    pub watches: Semaphore,
    pub openapi: crate::openapi::Cache,
    /// Serializes registry rebuilds: a rebuild that read storage earlier must never replace
    /// one that read it later.
    reload: tokio::sync::Mutex<()>,
    /// Namespace name → terminating, kept in step by every namespace write (admission reads
    /// it on each namespaced create instead of the database).
    namespaces: RwLock<std::collections::HashMap<String, bool>>,
    /// Bound admission policies, rebuilt after every policy or binding write.
    policies: RwLock<Arc<Vec<crate::admission::Bound>>>,
    /// Admission webhooks, rebuilt after every write of a webhook configuration.
    webhooks: RwLock<Arc<crate::webhook::Hooks>>,
    pub metrics: crate::metrics::Metrics,
}

impl State {
    pub fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Rebuild the registry from the built-ins plus every established CRD in storage.
    pub async fn reload_crds(&self) -> Result<(), ApiError> {
        let _serial = self.reload.lock().await;
        let crds = crd::served_resources(self).await?;
        let generation = self.registry().generation + 1;
        let mut all = self.builtins.clone();
        all.extend(crds);
        let reg = Arc::new(Registry::new(all, generation));
        match self.registry.write() {
            Ok(mut w) => *w = reg,
            Err(p) => *p.into_inner() = reg,
        }
        Ok(())
    }

    pub fn policies(&self) -> Arc<Vec<crate::admission::Bound>> {
        match self.policies.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reload bound admission policies (serialized like CRD reloads, for the same reason).
    pub async fn reload_policies(&self) -> Result<(), ApiError> {
        let _serial = self.reload.lock().await;
        let bound = Arc::new(crate::admission::load(self).await?);
        match self.policies.write() {
            Ok(mut w) => *w = bound,
            Err(p) => *p.into_inner() = bound,
        }
        Ok(())
    }

    pub fn webhooks(&self) -> Arc<crate::webhook::Hooks> {
        match self.webhooks.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reload admission webhooks (serialized like CRD reloads, for the same reason).
    pub async fn reload_webhooks(&self) -> Result<(), ApiError> {
        let _serial = self.reload.lock().await;
        let hooks = Arc::new(crate::webhook::load(self).await?);
        match self.webhooks.write() {
            Ok(mut w) => *w = hooks,
            Err(p) => *p.into_inner() = hooks,
        }
        Ok(())
    }

    pub fn note_namespace(&self, ev: &crate::storage::Event) {
        let name = crate::meta::name(&ev.object).to_string();
        let terminating = crate::meta::meta_str(&ev.object, "deletionTimestamp").is_some();
        let mut map = match self.namespaces.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if ev.kind == crate::storage::EventType::Deleted {
            map.remove(&name);
        } else {
            map.insert(name, terminating);
        }
    }

    /// Whether a namespace exists and is terminating. A miss is confirmed against storage, so
    /// the cache can only make admission faster, never wrong about a namespace that exists.
    pub async fn namespace_state(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let cached = match self.namespaces.read() {
            Ok(m) => m.get(name).copied(),
            Err(p) => p.into_inner().get(name).copied(),
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let key = crate::registry::storage_prefix("", "namespaces") + "/" + name;
        Ok(self
            .store
            .get(&key)
            .await?
            .map(|row| crate::meta::meta_str(&row.value, "deletionTimestamp").is_some()))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    pub pki: Pki,
    accept: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn abort(&self) {
        self.accept.abort();
    }
}

async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    match TcpListener::bind(SocketAddr::new(config.bind, config.port)).await {
        Ok(l) => Ok(l),
        Err(e) if config.port != 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::info!(port = config.port, "port busy, binding a free port instead");
            Ok(TcpListener::bind(SocketAddr::new(config.bind, 0)).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Open storage, bootstrap, and start serving. Returns once the listener is bound.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    std::fs::create_dir_all(&config.dir)?;
    let pki = Pki::load_or_create(&config.dir.join("tls"))?;
    let state = open_state(config)?;
    let listener = bind(&state.config).await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(pki.server_config()?);
    let accept = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
    // Bootstrap after binding so the process answers /livez at once; /readyz waits for this.
    lifecycle::bootstrap(&state)
        .await
        .map_err(|e| ServeError::Config(format!("bootstrap: {e}")))?;
    lifecycle::spawn(state.clone());
    state.ready.store(true, Ordering::SeqCst);
    Ok(Running {
        addr,
        state,
        pki,
        accept,
    })
}

/// The server's state over its storage in `config.dir`, not yet bootstrapped or serving.
pub(crate) fn open_state(config: Config) -> Result<Arc<State>, ServeError> {
    std::fs::create_dir_all(&config.dir)?;
    let tokens = Tokens::load(&config.dir.join("tls").join("tokens.json"))?;
    let store = Arc::new(Store::open(
        &config.dir.join("rdd.sqlite3"),
        StoreOptions {
            sync_full: config.sync_full,
            keep_revisions: config.compaction_keep,
            ..StoreOptions::default()
        },
    )?);
    let schemas = builtin::schemas();
    let builtins = builtin::resources(&schemas);
    let state = Arc::new(State {
        registry: RwLock::new(Arc::new(Registry::new(builtins.clone(), 1))),
        builtins,
        schemas,
        tokens,
        authz: Default::default(),
        ready: AtomicBool::new(false),
        inflight: Semaphore::new(config.max_inflight),
        watches: Semaphore::new(config.max_watches),
        openapi: Default::default(),
        reload: tokio::sync::Mutex::new(()),
        namespaces: RwLock::new(Default::default()),
        policies: RwLock::new(Arc::new(Vec::new())),
        webhooks: RwLock::new(Arc::new(Default::default())),
        metrics: Default::default(),
        store,
        config,
    });
    Ok(state)
}

impl State {
    pub(crate) fn mark_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::identity_of)
                .map(|(user, mut groups)| {
                    groups.push("system:authenticated".into());
                    UserInfo {
                        username: user,
                        uid: String::new(),
                        groups,
                    }
                });
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, std::convert::Infallible>(dispatch(state, cert_user, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

fn authenticate(
    state: &State,
    cert_user: Option<UserInfo>,
    req: &Request<Incoming>,
) -> Option<UserInfo> {
    if let Some(tok) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    {
        return state.tokens.authenticate(tok.trim());
    }
    cert_user
}

const PUBLIC_PATHS: &[&str] = &["/livez", "/readyz", "/healthz", "/version"];

fn is_public(path: &str) -> bool {
    PUBLIC_PATHS
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// The request path with each segment percent-decoded (clients such as the Python client send
/// `system%3Adiscovery`). A segment that decodes to something holding `/` is kept encoded: no
/// name may contain `/`, so it then fails validation instead of changing the route.
fn decode_path(raw: &str) -> String {
    raw.split('/')
        .map(
            |seg| match percent_encoding::percent_decode_str(seg).decode_utf8() {
                Ok(d) if !d.contains('/') => d.into_owned(),
                _ => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// One request: its span (continuing the caller's trace when the request carries a W3C
/// `traceparent`), its metrics, then [`serve`].
async fn dispatch(
    state: Arc<State>,
    cert_user: Option<UserInfo>,
    req: Request<Incoming>,
) -> Response<Body> {
    use tracing::Instrument;
    let path = decode_path(req.uri().path());
    let query = Query::parse(req.uri().query());
    let attrs = crate::authz::attrs::from_request(req.method(), &path, &query);
    let is_apply = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/apply-patch"));
    let labels = crate::metrics::labels(&attrs, is_apply);
    let span = tracing::info_span!(
        "apiserver.request",
        otel.name = %format!("{} {}", labels.verb, if attrs.resource.is_empty() { path.as_str() } else { attrs.resource.as_str() }),
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = %path,
        k8s.verb = %labels.verb,
        k8s.group = %attrs.group,
        k8s.resource = %attrs.resource,
        k8s.subresource = %attrs.subresource,
        k8s.namespace = %attrs.namespace,
        k8s.name = %attrs.name,
        k8s.field_manager = query.get("fieldManager").unwrap_or(""),
        enduser.id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    rdd_process::telemetry::set_parent_from(&span, req.headers());
    state.metrics.begin(&labels);
    let started = std::time::Instant::now();
    let resp = serve(state.clone(), cert_user, req, path, query)
        .instrument(span.clone())
        .await;
    let code = resp.status().as_u16();
    span.record("http.response.status_code", code);
    state
        .metrics
        .end(&labels, code, started.elapsed().as_secs_f64());
    if labels.verb == "WATCH" && code < 300 {
        // Long-running until the body (the watch stream) is dropped.
        let (parts, body) = resp.into_parts();
        let kind = state
            .registry()
            .get(&attrs.group, &attrs.version, &attrs.resource)
            .map(|r| r.kind.clone())
            .unwrap_or_default();
        let watcher = crate::metrics::WatcherLabels {
            group: attrs.group.clone(),
            version: attrs.version.clone(),
            kind,
        };
        state.metrics.watch_opened(&watcher);
        let guard = WatchGuard {
            state: state.clone(),
            labels,
            watcher,
        };
        let body =
            http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_frame(body, move |f| {
                let _keep = &guard;
                f
            }));
        return Response::from_parts(parts, body);
    }
    resp
}

struct WatchGuard {
    state: Arc<State>,
    labels: crate::metrics::RequestLabels,
    watcher: crate::metrics::WatcherLabels,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.state.metrics.watch_closed(&self.labels, &self.watcher);
    }
}

/// The `/metrics` exposition: request metrics plus storage measured now.
async fn metrics_text(state: &Arc<State>) -> Response<Body> {
    let counts = state.store.object_counts().await.unwrap_or_default();
    let objects: Vec<(String, i64)> = counts
        .into_iter()
        .map(|(prefix, n)| {
            let mut parts = prefix.trim_matches('/').splitn(2, '/');
            let group = parts.next().unwrap_or_default();
            let plural = parts.next().unwrap_or_default();
            let resource = if group == "core" {
                plural.to_string()
            } else {
                format!("{plural}.{group}")
            };
            (resource, n)
        })
        .collect();
    let text = state.metrics.encode(state.store.size_bytes(), &objects);
    let mut r = text_response(200, &text);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

async fn serve(
    state: Arc<State>,
    cert_user: Option<UserInfo>,
    req: Request<Incoming>,
    path: String,
    query: Query,
) -> Response<Body> {
    let user = authenticate(&state, cert_user, &req);
    let user = match (user, is_public(&path)) {
        (Some(u), _) => u,
        (None, true) => UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        },
        (None, false) => return error_response(&ApiError::unauthorized()),
    };
    tracing::Span::current().record("enduser.id", user.username.as_str());
    let user = match crate::authz::impersonate::resolve(&state.authz, user, req.headers()) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    // Authorized before the body is read or anything is routed, as upstream: a caller without
    // rights learns nothing but that it may not.
    if !user.is_master() {
        let attrs = crate::authz::attrs::from_request(req.method(), &path, &query);
        let decision = state.authz.authorize(&user, &attrs);
        if !decision.allowed {
            tracing::debug!(
                user = %user.username, verb = %attrs.verb, path = %path, code = 403,
                "request forbidden"
            );
            return error_response(&crate::authz::forbidden(&user, &attrs, &decision.reason));
        }
    }
    // Relayed as a stream (possibly upgraded): no body read here, no in-flight slot held for
    // the life of a log stream.
    if crate::passthrough::is_passthrough(&path) {
        return crate::passthrough::relay(&state.config.passthrough, req).await;
    }
    let is_watch = query.flag("watch").unwrap_or(false) || path.contains("/watch/");
    // Watches are long-lived and bounded separately; everything else shares the in-flight limit.
    let _permit = if is_watch || is_public(&path) {
        None
    } else {
        match state.inflight.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => return error_response(&ApiError::too_many_requests()),
        }
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let mut ctx = Ctx {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        user,
        warnings: Vec::new(),
    };
    let started = std::time::Instant::now();
    let resp = handle(&state, &mut ctx).await;
    if ctx.method != Method::GET {
        tracing::debug!(
            user = %ctx.user.username, verb = %ctx.method, path = %ctx.path,
            code = resp.status().as_u16(), latency_ms = started.elapsed().as_millis() as u64,
            field_manager = ctx.query.get("fieldManager").unwrap_or(""),
            "request"
        );
    }
    resp
}

/// Route an authenticated, authorized request. A handler that panics answers 500 with a Status
/// instead of dropping the connection, and the server goes on: one bad request must not take
/// the others' connection with it (the fuzz targets treat that 500 as a crash).
pub(crate) async fn handle(state: &Arc<State>, ctx: &mut Ctx) -> Response<Body> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(route(state, ctx))
        .catch_unwind()
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error_response(&e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(verb = %ctx.method, path = %ctx.path, panic = %what, "handler panicked");
            error_response(&ApiError::internal(format!(
                "the server panicked while handling {} {}: {what}",
                ctx.method, ctx.path
            )))
        }
    }
}

/// Read at most MAX_BODY bytes. A larger body is read to its end (up to a hard cap) and
/// discarded, so the client gets the 413 instead of a broken pipe while still sending.
async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    use hyper::body::Body as _;
    const DRAIN_CAP: usize = 64 * 1024 * 1024;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_CAP {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

fn too_large() -> ApiError {
    ApiError::too_large("the server has received a request that is too large (limit 3145728 bytes)")
}

async fn route(state: &Arc<State>, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let path = ctx.path.trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Ok(json_response(200, &version_info(), &[])),
        ["metrics"] => Ok(metrics_text(state).await),
        ["livez"] | ["healthz"] => Ok(health(ctx, true, &[("ping", true), ("storage", true)])),
        ["readyz"] => {
            let r = state.is_ready();
            Ok(health(
                ctx,
                r,
                &[("ping", true), ("storage", true), ("bootstrap", r)],
            ))
        }
        ["livez" | "healthz" | "readyz", check] => {
            let ok = match *check {
                "ping" | "storage" | "log" | "etcd" => true,
                "bootstrap" => state.is_ready(),
                _ => return Err(ApiError::not_found("", "healthz", check)),
            };
            Ok(if ok {
                text_response(200, "ok")
            } else {
                text_response(500, &format!("[-]{check} failed"))
            })
        }
        ["openapi", "v2"] => openapi::v2(state, ctx),
        ["openapi", "v3"] => openapi::v3_index(state),
        ["openapi", "v3", rest @ ..] => openapi::v3_doc(state, ctx, &rest.join("/")),
        ["api"] => discovery::core_root(state, ctx),
        ["apis"] => discovery::apis_root(state, ctx),
        ["api", "v1"] => discovery::resource_list(state, "", "v1"),
        ["api", v] => Err(ApiError::not_found("", "version", v)),
        ["apis", g] => discovery::group(state, g),
        ["apis", g, v] => discovery::resource_list(state, g, v),
        ["api", "v1", rest @ ..] => handlers::resource(state, ctx, "", "v1", rest).await,
        ["apis", g, v, rest @ ..] => handlers::resource(state, ctx, g, v, rest).await,
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

fn health(ctx: &Ctx, ok: bool, checks: &[(&str, bool)]) -> Response<Body> {
    if ctx.query.get("verbose").is_some() {
        let mut s = String::new();
        for (name, pass) in checks {
            s.push_str(&format!(
                "[{}]{name} {}\n",
                if *pass { "+" } else { "-" },
                if *pass { "ok" } else { "failed" }
            ));
        }
        s.push_str(if ok {
            "healthz check passed\n"
        } else {
            "healthz check failed\n"
        });
        return text_response(if ok { 200 } else { 500 }, &s);
    }
    if ok {
        text_response(200, "ok")
    } else {
        text_response(500, "[-]bootstrap failed: not ready")
    }
}

pub const KUBE_VERSION: &str = "v1.35.0";

pub fn version_info() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "35",
        "gitVersion": format!("{KUBE_VERSION}-rdd.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34"
    })
}

#[cfg(test)]
mod path_tests {
    #[test]
    fn segments_are_percent_decoded_one_by_one() {
        assert_eq!(
            super::decode_path(
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Adiscovery"
            ),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:discovery"
        );
        assert_eq!(
            super::decode_path("/api/v1/namespaces/a%2Fb"),
            "/api/v1/namespaces/a%2Fb"
        );
    }
}
