//! Watch streams: newline-delimited watch events, in revision order, with bookmarks, streaming
//! lists (`sendInitialEvents`) and 410 when history is gone or the watcher falls behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::error::ApiError;
use crate::handlers::{Filter, Target, list_objects, partial, present};
use crate::request::{Body, Ctx, Wants, negotiate};
use crate::server::State;
use crate::storage::{Event, EventType, StoreError};
use crate::table;

pub async fn watch_named(
    state: &Arc<State>,
    ctx: &Ctx,
    t: &Target,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    start(state, ctx, t, Some(name.to_string())).await
}

pub async fn watch(state: &Arc<State>, ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    start(state, ctx, t, None).await
}

struct Watcher {
    state: Arc<State>,
    target: Target,
    filter: Filter,
    name: Option<String>,
    wants: Wants,
    include_object: String,
    bookmarks: bool,
    tx: mpsc::Sender<Bytes>,
    last: i64,
}

fn gone(msg: &str) -> Value {
    ApiError::gone(msg.to_string()).to_status()
}

async fn start(
    state: &Arc<State>,
    ctx: &Ctx,
    t: &Target,
    name: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let wants = negotiate(&ctx.headers, false, true)?;
    let mut filter = Filter::from_query(ctx, &t.res)?;
    let name = name.or_else(|| filter.fields.name().map(str::to_string));
    if name.is_some() && filter.fields.is_empty() {
        filter.fields = crate::selector::FieldSelector::default();
    }
    let bookmarks = ctx.query.flag("allowWatchBookmarks")?;
    let initial = ctx.query.opt_flag("sendInitialEvents")?;
    let rv_match = ctx.query.get("resourceVersionMatch").unwrap_or("");
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    if initial.is_some() {
        if state.config.reject_send_initial_events {
            return Err(ApiError::new(
                422,
                "Invalid",
                "sendInitialEvents: Forbidden: sendInitialEvents is not supported by this server",
            ));
        }
        if rv_match != "NotOlderThan" {
            return Err(ApiError::new(
                422,
                "Invalid",
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if initial == Some(true) && !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    } else if !rv_match.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    let from: i64 = match rv {
        "" | "0" => 0,
        s => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
    };
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => Duration::from_secs(rand::rng().random_range(1800..3600)),
    };
    if state.watches.try_acquire().map(|p| p.forget()).is_err() {
        return Err(ApiError::too_many_requests());
    }
    // Subscribe before reading the starting point so nothing committed in between is missed.
    let rx = state.store.hub.subscribe();
    let (tx, body_rx) = mpsc::channel::<Bytes>(64);
    let mut w = Watcher {
        state: state.clone(),
        target: t.clone(),
        filter,
        name,
        wants,
        include_object: ctx
            .query
            .get("includeObject")
            .unwrap_or("Metadata")
            .to_string(),
        bookmarks,
        tx,
        last: 0,
    };
    let mut pending: Vec<Bytes> = Vec::new();
    let send_snapshot = match initial {
        Some(v) => v,
        None => from == 0,
    };
    let result: Result<(), ApiError> = async {
        if send_snapshot {
            let (items, rev, _) =
                list_objects(state, &t.res, &t.namespace, &w.filter, 0, None, 0).await?;
            for obj in items {
                if w.name
                    .as_deref()
                    .is_some_and(|n| crate::meta::name(&obj) != n)
                {
                    continue;
                }
                pending.push(w.encode("ADDED", &obj));
            }
            w.last = rev;
            if initial == Some(true) {
                pending.push(w.bookmark(rev, true));
            }
        } else {
            let evs = state.store.events_since(from).await.map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::gone(format!(
                    "too old resource version: {from} ({})",
                    state.store.compacted_rev()
                )),
                other => other.into(),
            })?;
            w.last = from;
            for ev in evs {
                if let Some(b) = w.translate(&ev) {
                    pending.push(b);
                }
                w.last = ev.rev;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        state.watches.add_permits(1);
        return Err(e);
    }
    tokio::spawn(async move {
        w.run(rx, pending, timeout).await;
        w.state.watches.add_permits(1);
    });
    let stream = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

impl Watcher {
    fn encode(&self, kind: &str, obj: &Value) -> Bytes {
        let object = match self.wants {
            Wants::Table => {
                let fake = Ctx {
                    method: http::Method::GET,
                    path: String::new(),
                    query: crate::request::Query::parse(Some(&format!(
                        "includeObject={}",
                        self.include_object
                    ))),
                    headers: http::HeaderMap::new(),
                    body: Bytes::new(),
                    user: crate::auth::UserInfo {
                        username: String::new(),
                        uid: String::new(),
                        groups: vec![],
                    },
                    warnings: vec![],
                };
                let rv = crate::meta::meta_str(obj, "resourceVersion")
                    .unwrap_or("")
                    .to_string();
                table::table(
                    &self.target.res,
                    &fake,
                    std::slice::from_ref(obj),
                    json!({"resourceVersion": rv}),
                )
                .unwrap_or_else(|e| e.to_status())
            }
            Wants::PartialMetadata => partial(obj),
            _ => obj.clone(),
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.target.res.kind, "apiVersion": self.target.res.api_version(), "metadata": metadata});
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn in_scope(&self, key: &str) -> bool {
        let res = &self.target.res;
        match &self.name {
            Some(n) => key == res.key(&self.target.namespace, n),
            None => key.starts_with(&res.prefix(&self.target.namespace)),
        }
    }

    /// The event this watcher sees for a storage event, if any (selector transitions included).
    fn translate(&self, ev: &Event) -> Option<Bytes> {
        if !self.in_scope(&ev.key) {
            return None;
        }
        let res = &self.target.res;
        // The common case (no selector, plain JSON, the stored shape): one encoding per event,
        // shared by every watcher.
        if self.wants == Wants::Json
            && self.filter.labels.is_empty()
            && self.filter.fields.is_empty()
            && res.flavor != crate::registry::Flavor::EventsV1
            && res.storage_version
        {
            let obj = ev.encoded.get_or_init(|| {
                Bytes::from(
                    serde_json::to_vec(&present(res, &ev.object, ev.rev)).unwrap_or_default(),
                )
            });
            let mut line = Vec::with_capacity(obj.len() + 32);
            line.extend_from_slice(b"{\"type\":\"");
            line.extend_from_slice(ev.kind.as_str().as_bytes());
            line.extend_from_slice(b"\",\"object\":");
            line.extend_from_slice(obj);
            line.extend_from_slice(b"}\n");
            return Some(Bytes::from(line));
        }
        let new = present(res, &ev.object, ev.rev);
        let now_matches = self.filter.matches(res, &new);
        let was = ev
            .prev
            .as_ref()
            .map(|p| self.filter.matches(res, &present(res, p, ev.rev)));
        let kind = match (ev.kind, was, now_matches) {
            (EventType::Deleted, _, true) => "DELETED",
            (EventType::Deleted, _, false) => return None,
            (EventType::Added, _, true) => "ADDED",
            (EventType::Modified, Some(true), true) => "MODIFIED",
            (EventType::Modified, Some(false) | None, true) => "ADDED",
            (EventType::Modified, Some(true), false) => "DELETED",
            _ => return None,
        };
        Some(self.encode(kind, &new))
    }

    async fn send(&self, b: Bytes) -> bool {
        self.tx.send(b).await.is_ok()
    }

    async fn run(
        &mut self,
        mut rx: broadcast::Receiver<Arc<Event>>,
        pending: Vec<Bytes>,
        timeout: Duration,
    ) {
        for b in pending {
            if !self.send(b).await {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(Duration::from_secs(60));
        ticker.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rev <= self.last {
                            continue;
                        }
                        self.last = ev.rev;
                        if let Some(b) = self.translate(&ev)
                            && !self.send(b).await {
                                return;
                            }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let line = json!({"type": "ERROR", "object": gone("the watcher fell too far behind; relist and watch again")});
                        let mut b = serde_json::to_vec(&line).unwrap_or_default();
                        b.push(b'\n');
                        let _ = self.send(Bytes::from(b)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if self.bookmarks {
                        let rev = self.last.max(self.state.store.current_rev());
                        // Only advance to the current revision when nothing is in flight for us.
                        if rx.is_empty() {
                            self.last = rev;
                        }
                        if !self.send(self.bookmark(self.last, false)).await {
                            return;
                        }
                    }
                }
                _ = &mut deadline => {
                    if self.bookmarks {
                        if rx.is_empty() {
                            self.last = self.last.max(self.state.store.current_rev());
                        }
                        let _ = self.send(self.bookmark(self.last, false)).await;
                    }
                    return;
                }
                _ = self.tx.closed() => return,
            }
        }
    }
}
