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
//! While connected the session also watches Namespace NS (R-ENG-D2, R-ENG-T10):
//!
//! | NS | the session does |
//! |---|---|
//! | terminating | nothing: the kind's reconciler releases the mirrors NS deletion deletes, without Docker calls |
//! | gone | the kind's [`MirrorKind::namespace_gone`] (the container-controller, owner of NS repair, recreates NS and `moby`; the others wait) |
//! | live again (a new UID) | full sync: every mirror is restored |
//!
//! The subscription comes first and the list only after its `Synced` marker, so no event between
//! the two is lost. Every write compares first: an idle session makes no API write and no Docker
//! call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
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
    /// Whether this kind recreates Namespace NS (exactly one process does, `docs/architecture.md`).
    /// The others' full sync fails while NS does not exist, and waits for it to come back.
    fn owns_namespace(&self) -> bool {
        false
    }
    /// Namespace NS was deleted while connected (R-ENG-D2): the owner recreates it.
    fn namespace_gone(&self, _ns: &str) -> impl Future<Output = Result<(), MirrorError>> + Send {
        async { Ok(()) }
    }
}

/// The session's state as the kind's reconciler (actions, deletion forwarding) needs it: it acts
/// only in `ns` and only while `connected` (a full sync has completed on a live subscription).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineState {
    pub ns: Option<String>,
    pub connected: bool,
    /// The App wants the moby engine mirrored (running, moby, live), whether or not the
    /// gateway is connected right now: the engine's "watcher" runs (controllers.md §4.14, §4.15).
    pub wanted: bool,
}

pub struct Session<M> {
    pub kind: Arc<M>,
    /// This controller's API client (Namespace NS watch).
    pub client: kube::Client,
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
                            self.set_connected(Some(ns.clone()), false, true);
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
                    self.set_connected(Some(ns.clone()), false, false);
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
                    self.set_connected(None, false, false);
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

    fn set_connected(&self, ns: Option<String>, connected: bool, wanted: bool) {
        self.state.send_if_modified(|s| {
            let new = EngineState {
                ns: ns.clone(),
                connected,
                wanted,
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
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let mut ns_watch = watcher(
            nss,
            watcher::Config::default().fields(&format!("metadata.name={ns}")),
        )
        .default_backoff()
        .boxed();
        let mut ns_state = NsState::default();
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
                ev = ns_watch.next() => {
                    let Some(ev) = ev else {
                        ns_watch = futures::stream::pending().boxed();
                        continue;
                    };
                    match ns_state.observe(ev) {
                        NsChange::None => {}
                        NsChange::Gone => {
                            tracing::warn!("namespace deleted while connected");
                            if let Err(e) = self.kind.namespace_gone(ns).await {
                                tracing::warn!(error = %e, "repairing the namespace; retrying with a full sync");
                                retry_sync = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                            }
                        }
                        NsChange::Back => {
                            if synced {
                                tracing::info!("namespace back: restoring the mirrors");
                                synced = self.full_sync(ns, app).await;
                                if !synced {
                                    retry_sync = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                                }
                            }
                        }
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
                            self.set_connected(Some(ns.to_string()), false, true);
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
                            // A child of the gateway's span for the event: one trace from the
                            // Docker event through the inspect to the mirror's API write.
                            let span = tracing::info_span!("mirror.event", otel.kind = "consumer", kind = self.kind.plural(), namespace = %ns, docker.id = %ev.actor_id, action = %ev.action, docker.event.sequence = ev.sequence);
                            rdd_process::telemetry::set_parent_from_traceparent(&span, &ev.traceparent);
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
        let result = async {
            if !self.kind.owns_namespace() {
                let nss: Api<Namespace> = Api::all(self.client.clone());
                match nss.get_opt(ns).await? {
                    Some(n) if n.metadata.deletion_timestamp.is_none() => {}
                    Some(_) => {
                        return Err(MirrorError::Other(format!(
                            "namespace {ns} is being deleted"
                        )));
                    }
                    None => {
                        return Err(MirrorError::Other(format!("namespace {ns} does not exist")));
                    }
                }
            }
            self.kind.full_sync(ns).await
        }
        .instrument(span)
        .await;
        match result {
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
                crate::memory::release_free_memory();
                self.set_connected(Some(ns.to_string()), true, true);
                if let Err(e) = self.writer.write(generation, &Synced::Connected).await {
                    tracing::warn!(error = %e, "writing Connected");
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "full sync failed");
                self.set_connected(Some(ns.to_string()), false, true);
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

/// What the Namespace NS watch says, reduced to the changes the session acts on.
#[derive(Debug, PartialEq, Eq)]
enum NsChange {
    None,
    /// NS no longer exists (first noticed).
    Gone,
    /// NS exists again, live, after it was gone or with a new UID.
    Back,
}

#[derive(Debug, Default)]
struct NsState {
    /// UID of the live NS last seen.
    uid: Option<String>,
    missing: bool,
    /// Whether the current (re)list found NS.
    found_in_init: bool,
}

impl NsState {
    fn observe(&mut self, ev: Result<watcher::Event<Namespace>, watcher::Error>) -> NsChange {
        match ev {
            Err(e) => {
                tracing::warn!(error = %e, "namespace watch");
                NsChange::None
            }
            Ok(watcher::Event::Init) => {
                self.found_in_init = false;
                NsChange::None
            }
            Ok(watcher::Event::InitApply(n)) => {
                self.found_in_init = true;
                self.live(&n)
            }
            Ok(watcher::Event::Apply(n)) => self.live(&n),
            Ok(watcher::Event::InitDone) if !self.found_in_init => self.gone(),
            Ok(watcher::Event::InitDone) => NsChange::None,
            Ok(watcher::Event::Delete(_)) => self.gone(),
        }
    }

    fn live(&mut self, n: &Namespace) -> NsChange {
        if n.metadata.deletion_timestamp.is_some() {
            return NsChange::None;
        }
        let uid = n.uid();
        let back = self.missing || (self.uid.is_some() && self.uid != uid);
        self.uid = uid;
        self.missing = false;
        if back { NsChange::Back } else { NsChange::None }
    }

    fn gone(&mut self) -> NsChange {
        self.uid = None;
        if std::mem::replace(&mut self.missing, true) {
            NsChange::None
        } else {
            NsChange::Gone
        }
    }
}

fn current_generation(app: &watch::Receiver<Option<App>>) -> i64 {
    app.borrow()
        .as_ref()
        .and_then(|a| a.metadata.generation)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ns(uid: &str, terminating: bool) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some("ns".into());
        n.metadata.uid = Some(uid.into());
        if terminating {
            n.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        n
    }

    #[test]
    fn r_eng_d2_namespace_watch_reduces_to_gone_and_back() {
        use watcher::Event as E;
        let mut s = NsState::default();
        assert_eq!(s.observe(Ok(E::Init)), NsChange::None);
        assert_eq!(s.observe(Ok(E::InitApply(ns("a", false)))), NsChange::None);
        assert_eq!(s.observe(Ok(E::InitDone)), NsChange::None);
        // Deletion: terminating first (nothing), then gone once.
        assert_eq!(s.observe(Ok(E::Apply(ns("a", true)))), NsChange::None);
        assert_eq!(s.observe(Ok(E::Delete(ns("a", true)))), NsChange::Gone);
        assert_eq!(s.observe(Ok(E::Delete(ns("a", true)))), NsChange::None);
        assert_eq!(s.observe(Ok(E::Apply(ns("b", false)))), NsChange::Back);
        assert_eq!(s.observe(Ok(E::Apply(ns("b", false)))), NsChange::None);
        // A relist that finds no NS (the Delete was missed) is gone; one that finds a new UID
        // is back.
        assert_eq!(s.observe(Ok(E::Init)), NsChange::None);
        assert_eq!(s.observe(Ok(E::InitDone)), NsChange::Gone);
        assert_eq!(s.observe(Ok(E::Init)), NsChange::None);
        assert_eq!(s.observe(Ok(E::InitApply(ns("c", false)))), NsChange::Back);
        assert_eq!(s.observe(Ok(E::InitDone)), NsChange::None);
        assert_eq!(s.observe(Ok(E::Init)), NsChange::None);
        assert_eq!(s.observe(Ok(E::InitApply(ns("d", false)))), NsChange::Back);
    }
}
