//! The engine session per App (`shared/design/processes.md`), generic over the mirrored kind.
//!
//! | App says | gateway says | the session does | `<Kind>sSynced` |
//! |---|---|---|---|
//! | wanted (running, moby, live) | `Synced` or `Resync` | full sync: list, apply each, prune | `True/Connected` |
//! | wanted | an event | apply the one affected mirror | unchanged |
//! | wanted | `Disconnected` | keep mirrors, wait for the reconnect's `Resync` | `False/ConnectFailed` (gateway's reason) |
//! | wanted | stream ends / gateway unreachable | keep mirrors, resubscribe with backoff | `False/ConnectFailed` |
//! | not running | — | stop the subscription, sweep | `False/Stopped` after the sweep |
//! | running, not moby | — | stop, sweep | `True/NotApplicable` after the sweep (R-ENG-D7) |
//! | deleted or terminating (G-1) | — | stop, sweep in the last known NS | not written |
//!
//! The subscription comes first and the list only after its `Synced` marker, so no event between
//! the two is lost. Every write compares first: an idle session makes no API write and no Docker
//! call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher;
use rdd_api::app::App;
use rdd_proto::v1::{SubscribeRequest, connection_state, subscribe_response::Message};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::MirrorError;
use crate::app::{APP_NAME, Synced, SyncedWriter, Wanted, evaluate};
use crate::gateway::Gateway;
use crate::sweep::SweepReport;

/// What a full sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub listed: usize,
    /// Mirrors written (created or changed).
    pub applied: usize,
    pub pruned: usize,
    /// Items whose inspect or apply failed: skipped, reported, retried on the next sync
    /// (R-ENG-L3).
    pub skipped: Vec<String>,
}

/// One mirrored kind: what the session calls.
pub trait MirrorKind: Send + Sync + 'static {
    /// `Containers`, `Images`, `Volumes`: names the condition `<Kind>sSynced` and the logs.
    fn plural(&self) -> &'static str;
    /// Gateway event types to subscribe to.
    fn event_types(&self) -> Vec<String>;
    /// Gateway event actions to subscribe to; empty means all.
    fn event_actions(&self) -> Vec<String> {
        Vec::new()
    }
    /// List, apply every item (bounded concurrency, failed items skipped), prune mirrors whose
    /// Docker object is gone.
    fn full_sync(&self, ns: &str) -> impl Future<Output = Result<SyncReport, MirrorError>> + Send;
    /// Apply what one event changed.
    fn on_event(
        &self,
        ns: &str,
        event: rdd_proto::v1::Event,
    ) -> impl Future<Output = Result<(), MirrorError>> + Send;
    /// Remove every object of this kind in `ns` (no Docker call).
    fn sweep(&self, ns: &str) -> impl Future<Output = Result<SweepReport, MirrorError>> + Send;
}

/// The session's state as the kind's reconciler (actions, deletion forwarding) needs it: it acts
/// only in `ns` and only while `connected` (a full sync has completed on a live subscription).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineState {
    pub ns: Option<String>,
    pub connected: bool,
}

pub struct Session<M> {
    pub kind: Arc<M>,
    pub gateway: Gateway,
    pub writer: SyncedWriter,
    /// Gateway label selector (`a=b,…`) limiting what is mirrored; empty mirrors everything.
    pub label_selector: String,
    /// Subscriber name shown in the gateway's logs.
    pub subscriber: String,
    pub state: watch::Sender<EngineState>,
}

enum Ended {
    Shutdown,
    /// The App changed so that this session is no longer the wanted one.
    Unwanted,
    /// Subscription failed or ended: retry after a backoff.
    Failed(String),
}

/// Follow the singleton App into `tx`: `None` when it does not exist.
pub async fn follow_app(
    api: Api<App>,
    tx: watch::Sender<Option<App>>,
    shutdown: CancellationToken,
) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={APP_NAME}"));
    let mut stream = watcher(api, cfg).boxed();
    let mut seen = false;
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        match ev {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "App watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(Ok(watcher::Event::Init)) => seen = false,
            Some(Ok(watcher::Event::InitApply(a))) => {
                seen = true;
                tx.send_replace(Some(a));
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if !seen {
                    tx.send_replace(None);
                }
            }
            Some(Ok(watcher::Event::Apply(a))) => {
                tx.send_replace(Some(a));
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                tx.send_replace(None);
            }
        }
    }
}

impl<M: MirrorKind> Session<M> {
    /// Drive the session until `shutdown`. `app` carries the latest App (see [`follow_app`]).
    pub async fn run(self, mut app: watch::Receiver<Option<App>>, shutdown: CancellationToken) {
        let mut last_ns: Option<String> = None;
        // The namespace last swept clean for the current not-wanted state.
        let mut swept: Option<String> = None;
        let mut failures: u32 = 0;
        // Wait for the first App read before deciding anything.
        if app.changed().await.is_err() {
            return;
        }
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let wanted = evaluate(app.borrow_and_update().as_ref());
            if let Some(ns) = wanted.ns() {
                last_ns = Some(ns.to_string());
            }
            match &wanted {
                Wanted::Mirror { ns, .. } => {
                    swept = None;
                    let ns = ns.clone();
                    let span = tracing::info_span!("session", kind = self.kind.plural(), %ns);
                    match self
                        .connected(&ns, &mut app, &shutdown)
                        .instrument(span)
                        .await
                    {
                        Ended::Shutdown => return,
                        Ended::Unwanted => {
                            failures = 0;
                            continue;
                        }
                        Ended::Failed(reason) => {
                            self.set_connected(Some(ns.clone()), false);
                            let generation = current_generation(&app);
                            if let Err(e) = self
                                .writer
                                .write(generation, &Synced::ConnectFailed(reason.clone()))
                                .await
                            {
                                tracing::warn!(error = %e, "writing ConnectFailed");
                            }
                            let delay =
                                rdd_kit::runner::backoff(failures).min(Duration::from_secs(10));
                            failures = failures.saturating_add(1);
                            tracing::warn!(%reason, ?delay, "gateway session ended; resubscribing");
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(delay) => {}
                            }
                            continue;
                        }
                    }
                }
                Wanted::Stopped { ns, generation } | Wanted::NotApplicable { ns, generation } => {
                    self.set_connected(Some(ns.clone()), false);
                    let terminal = if matches!(wanted, Wanted::Stopped { .. }) {
                        Synced::Stopped
                    } else {
                        Synced::NotApplicable
                    };
                    let result = if swept.as_deref() == Some(ns.as_str()) {
                        Ok(terminal.clone())
                    } else {
                        self.sweep(ns).await.map(|r| {
                            if r.blocked.is_empty() {
                                swept = Some(ns.clone());
                                terminal.clone()
                            } else {
                                Synced::SweepBlocked(format!(
                                    "sweep blocked by foreign finalizers: {}",
                                    r.blocked.join("; ")
                                ))
                            }
                        })
                    };
                    match result {
                        // The terminal condition only after the sweep (R-ENG-D7).
                        Ok(value) => {
                            if let Err(e) = self.writer.write(*generation, &value).await {
                                tracing::warn!(error = %e, "writing the terminal condition");
                            }
                            if matches!(value, Synced::SweepBlocked(_)) {
                                // Look again later: the foreign finalizer may go away.
                                if self
                                    .wait_change(&mut app, &shutdown, Some(Duration::from_secs(5)))
                                    .await
                                {
                                    return;
                                }
                                continue;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "sweep failed; retrying");
                            if self
                                .wait_change(&mut app, &shutdown, Some(Duration::from_secs(2)))
                                .await
                            {
                                return;
                            }
                            continue;
                        }
                    }
                }
                Wanted::Gone => {
                    self.set_connected(None, false);
                    if let Some(ns) = last_ns.clone()
                        && swept.as_deref() != Some(ns.as_str())
                    {
                        match self.sweep(&ns).await {
                            Ok(r) if r.blocked.is_empty() => swept = Some(ns),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "sweep after App deletion failed; retrying");
                                if self
                                    .wait_change(&mut app, &shutdown, Some(Duration::from_secs(2)))
                                    .await
                                {
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                }
            }
            if self.wait_change(&mut app, &shutdown, None).await {
                return;
            }
        }
    }

    /// Wait for an App change (or `timeout`); true on shutdown.
    async fn wait_change(
        &self,
        app: &mut watch::Receiver<Option<App>>,
        shutdown: &CancellationToken,
        timeout: Option<Duration>,
    ) -> bool {
        let sleep = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(86_400 * 365)));
        tokio::select! {
            _ = shutdown.cancelled() => true,
            r = app.changed() => r.is_err(),
            _ = sleep => false,
        }
    }

    fn set_connected(&self, ns: Option<String>, connected: bool) {
        self.state.send_if_modified(|s| {
            let new = EngineState {
                ns: ns.clone(),
                connected,
            };
            if *s == new {
                false
            } else {
                *s = new;
                true
            }
        });
    }

    async fn sweep(&self, ns: &str) -> Result<SweepReport, MirrorError> {
        let r = self
            .kind
            .sweep(ns)
            .instrument(tracing::info_span!("sweep", kind = self.kind.plural(), %ns))
            .await?;
        tracing::info!(deleted = r.deleted, blocked = r.blocked.len(), "swept");
        Ok(r)
    }

    /// One subscription: returns when it ends, the App no longer wants it, or shutdown.
    async fn connected(
        &self,
        ns: &str,
        app: &mut watch::Receiver<Option<App>>,
        shutdown: &CancellationToken,
    ) -> Ended {
        let mut gw = self.gateway.clone();
        let req = SubscribeRequest {
            types: self.kind.event_types(),
            actions: self.kind.event_actions(),
            label_selector: self.label_selector.clone(),
            subscriber: self.subscriber.clone(),
        };
        let mut stream = match gw.subscribe(req).await {
            Ok(s) => s.into_inner(),
            Err(e) => return Ended::Failed(format!("docker-gateway unavailable: {}", e.message())),
        };
        // Set after a successful full sync on this subscription.
        let mut synced = false;
        // A full sync that failed is retried after this.
        let mut retry_sync: Option<tokio::time::Instant> = None;
        loop {
            let retry = async {
                match retry_sync {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                r = app.changed() => {
                    if r.is_err() {
                        return Ended::Shutdown;
                    }
                    let wanted = evaluate(app.borrow_and_update().as_ref());
                    match wanted {
                        Wanted::Mirror { ns: n, generation } if n == ns => {
                            // A spec change that does not stop mirroring: restamp the generation.
                            if synced
                                && let Err(e) = self.writer.write(generation, &Synced::Connected).await
                            {
                                tracing::warn!(error = %e, "writing Connected");
                            }
                        }
                        _ => return Ended::Unwanted,
                    }
                }
                _ = retry => {
                    retry_sync = None;
                    synced = self.full_sync(ns, app).await;
                    if !synced {
                        retry_sync = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                    }
                }
                msg = stream.message() => {
                    let msg = match msg {
                        Ok(Some(m)) => m.message,
                        Ok(None) => return Ended::Failed("docker-gateway closed the subscription".into()),
                        Err(e) => return Ended::Failed(format!("docker-gateway subscription: {}", e.message())),
                    };
                    match msg {
                        Some(Message::Connection(st))
                            if st.state == connection_state::State::Disconnected as i32 =>
                        {
                            synced = false;
                            retry_sync = None;
                            self.set_connected(Some(ns.to_string()), false);
                            let generation = current_generation(app);
                            // Mirrors are kept (controllers.md §4.12).
                            if let Err(e) = self
                                .writer
                                .write(generation, &Synced::ConnectFailed(st.reason.clone()))
                                .await
                            {
                                tracing::warn!(error = %e, "writing ConnectFailed");
                            }
                        }
                        Some(Message::Connection(_)) => {}
                        Some(Message::Synced(_)) | Some(Message::Resync(_)) => {
                            synced = self.full_sync(ns, app).await;
                            retry_sync = (!synced).then(|| tokio::time::Instant::now() + Duration::from_secs(2));
                        }
                        Some(Message::Event(ev)) => {
                            if !synced {
                                // The next full sync covers it.
                                continue;
                            }
                            let span = tracing::debug_span!("event", action = %ev.action, id = %ev.actor_id, seq = ev.sequence);
                            if let Err(e) = self.kind.on_event(ns, ev).instrument(span).await {
                                // Self-healing: the next event or resync repairs it.
                                tracing::warn!(error = %e, "event handling failed");
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }

    /// Full sync, then the state and the condition. Returns whether it succeeded.
    async fn full_sync(&self, ns: &str, app: &watch::Receiver<Option<App>>) -> bool {
        let generation = current_generation(app);
        let started = std::time::Instant::now();
        let span = tracing::info_span!("full_sync", kind = self.kind.plural(), %ns);
        match self.kind.full_sync(ns).instrument(span).await {
            Ok(r) => {
                tracing::info!(
                    listed = r.listed,
                    applied = r.applied,
                    pruned = r.pruned,
                    skipped = r.skipped.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "full sync done"
                );
                if !r.skipped.is_empty() {
                    tracing::warn!(skipped = ?r.skipped, "full sync skipped items (retried on the next sync)");
                }
                self.set_connected(Some(ns.to_string()), true);
                if let Err(e) = self.writer.write(generation, &Synced::Connected).await {
                    tracing::warn!(error = %e, "writing Connected");
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "full sync failed");
                self.set_connected(Some(ns.to_string()), false);
                if let Err(e) = self
                    .writer
                    .write(
                        generation,
                        &Synced::ConnectFailed(format!("full sync: {e}")),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "writing ConnectFailed");
                }
                false
            }
        }
    }
}

fn current_generation(app: &watch::Receiver<Option<App>>) -> i64 {
    app.borrow()
        .as_ref()
        .and_then(|a| a.metadata.generation)
        .unwrap_or(0)
}
