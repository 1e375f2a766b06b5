//! The container side of the engine session: full sync, per-event applies, prune, sweep, and the
//! `moby` ContainerNamespace and Namespace NS repair (R-ENG-D2, R-ENG-D6).
//!
//! Every write compares with the informer's copy first, so a resync of unchanged containers
//! writes nothing; a new mirror is created with a plain create (never an apply that could re-add
//! our finalizer to a terminating mirror, R-ENG-S6), its status is applied under
//! [`FIELD_MANAGER`] and its conditions under [`CONDITIONS_MANAGER`] (R-ENG-D3).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use rdd_api::containers::{Container, ContainerNamespace, ContainerStatus};
use rdd_kit::apply::Applier;
use rdd_kit::conditions;
use rdd_mirror::gateway::{Gateway, is_not_found};
use rdd_mirror::objects::Objects;
use rdd_mirror::process::Started;
use rdd_mirror::session::{MirrorKind, SyncReport};
use rdd_mirror::sweep::{SweepReport, sweep};
use rdd_mirror::{MirrorError, is_api_status, labels};
use rdd_proto::v1::{ContainerRef, ListContainersRequest};
use serde_json::json;
use tracing::Instrument;

use crate::mirror;

/// Field manager of the mirror (everything in `status` but conditions and lastAction).
pub const FIELD_MANAGER: &str = "container-controller";
/// Field manager of `status.conditions` (resources.md §5.2.2).
pub const CONDITIONS_MANAGER: &str = "container-controller-conditions";

/// The one ContainerNamespace of the moby engine.
pub const MOBY: &str = "moby";

/// Container events that change what a mirror shows; `destroy` releases it.
pub const ACTIONS: &[&str] = &[
    "create", "start", "stop", "die", "pause", "unpause", "restart", "rename", "destroy",
];

pub struct Containers {
    pub objects: Objects<Container>,
    pub gateway: Gateway,
    /// Docker label filters (`key` or `key=value`), from the configured selector.
    pub labels: Vec<String>,
    pub concurrency: usize,
    pub sweep_wait: Duration,
}

/// What an apply did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub created: bool,
    pub status: bool,
    pub conditions: bool,
}

impl Applied {
    pub fn wrote(&self) -> bool {
        self.created || self.status || self.conditions
    }
}

impl Containers {
    pub fn new(s: &Started<Container>) -> Containers {
        Containers {
            objects: Objects::new(
                s.client.clone(),
                s.store.clone(),
                s.ready.clone(),
                FIELD_MANAGER,
            ),
            gateway: s.gateway.clone(),
            labels: labels::docker_filters(&s.cfg.label_selector),
            concurrency: s.cfg.sync_concurrency,
            sweep_wait: Duration::from_secs(s.cfg.sweep_wait_seconds),
        }
    }

    pub fn client(&self) -> &Client {
        &self.objects.client
    }

    /// The mirror status of container `id`; `None` when the container is gone.
    async fn inspect(&self, id: &str) -> Result<Option<(String, ContainerStatus)>, MirrorError> {
        let mut gw = self.gateway.clone();
        match gw
            .inspect_container(ContainerRef { id: id.to_string() })
            .instrument(tracing::debug_span!("gateway", call = "InspectContainer", %id))
            .await
        {
            Ok(c) => {
                let c = c.into_inner();
                let status = mirror::status(&c);
                Ok(Some((c.id, status)))
            }
            Err(s) if is_not_found(&s) => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// Inspect `id` and apply its mirror; `None` when the container is gone.
    async fn inspect_apply(&self, ns: &str, id: &str) -> Result<Option<Applied>, MirrorError> {
        match self.inspect(id).await? {
            Some((id, status)) => self.apply(ns, &id, status).await.map(Some),
            None => Ok(None),
        }
    }

    /// Bring mirror `name` to `desired`, writing only what differs from the informer's copy.
    pub async fn apply(
        &self,
        ns: &str,
        name: &str,
        desired: ContainerStatus,
    ) -> Result<Applied, MirrorError> {
        let api = self.objects.api(ns);
        let mut done = Applied::default();
        let Some((existing, ensured)) = self
            .objects
            .ensure(ns, name, |n| Container::new(n, Default::default()))
            .await?
        else {
            return Ok(done);
        };
        done.created = ensured.created || ensured.finalizer_added;
        let current = existing.status.clone().unwrap_or_default();
        if mirror::owned_part(&current) != desired {
            let body = serde_json::to_value(&desired)?;
            Applier::new(FIELD_MANAGER).status(&api, name, body).await?;
            done.status = true;
        }
        let mut conds = current.conditions.clone();
        let mut changed = false;
        let now = conditions::now();
        for d in mirror::conditions(desired.status) {
            changed |= conditions::set(&mut conds, &d, &now);
        }
        if changed {
            Applier::new(CONDITIONS_MANAGER)
                .status(&api, name, json!({ "conditions": conds }))
                .await?;
            done.conditions = true;
        }
        Ok(done)
    }

    /// Namespace NS and ContainerNamespace `moby` exist (R-ENG-D2); applied only here, on a
    /// full sync or a repair, never per event (R-ENG-D6). `moby` carries no finalizer. Nothing
    /// is written into a namespace that is being deleted: it is recreated once it is gone.
    pub async fn ensure_namespaces(&self, ns: &str) -> Result<(), MirrorError> {
        let nss: Api<Namespace> = Api::all(self.client().clone());
        match nss.get_opt(ns).await? {
            Some(n) if n.metadata.deletion_timestamp.is_some() => {
                return Err(MirrorError::Other(format!(
                    "namespace {ns} is being deleted"
                )));
            }
            Some(_) => {}
            None => {
                let mut n = Namespace::default();
                n.metadata.name = Some(ns.to_string());
                match nss.create(&PostParams::default(), &n).await {
                    Ok(_) => tracing::info!(%ns, "namespace recreated"),
                    Err(e) if is_api_status(&e, 409) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let cns: Api<ContainerNamespace> = Api::namespaced(self.client().clone(), ns);
        if cns.get_opt(MOBY).await?.is_none() {
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match cns.create(&pp, &ContainerNamespace::new(MOBY, ns)).await {
                Ok(_) => tracing::info!(%ns, "containernamespace moby created"),
                Err(e) if is_api_status(&e, 409) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl MirrorKind for Containers {
    fn plural(&self) -> &'static str {
        "Containers"
    }

    fn event_types(&self) -> Vec<String> {
        vec!["container".into()]
    }

    fn event_actions(&self) -> Vec<String> {
        ACTIONS.iter().map(|s| s.to_string()).collect()
    }

    async fn full_sync(&self, ns: &str) -> Result<SyncReport, MirrorError> {
        // Not `store.wait_until_ready()`: the runner waits on that, and it wakes one waiter.
        self.objects.wait_ready().await?;
        self.ensure_namespaces(ns).await?;
        let mut gw = self.gateway.clone();
        let list = gw
            .list_containers(ListContainersRequest {
                all: true,
                label: self.labels.clone(),
            })
            .instrument(tracing::info_span!("gateway", call = "ListContainers"))
            .await?
            .into_inner()
            .containers;
        let ids: HashSet<String> = list.iter().map(|c| c.id.clone()).collect();
        let mut report = SyncReport {
            listed: list.len(),
            ..Default::default()
        };
        // Two bounded stages in a pipeline: inspects feed applies as they complete, so neither
        // the gateway nor the API server waits for the other's slowest call.
        let conc = self.concurrency.max(1);
        let mut results = futures::stream::iter(list.into_iter().map(|c| async move {
            let r = self.inspect(&c.id).await;
            (c.id, r)
        }))
        .buffer_unordered(conc)
        .map(|(id, r)| async move {
            let r = match r {
                Ok(Some((cid, status))) => self.apply(ns, &cid, status).await.map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            (id, r)
        })
        .buffer_unordered(conc);
        while let Some((id, r)) = results.next().await {
            match r {
                Ok(Some(a)) if a.wrote() => report.applied += 1,
                Ok(_) => {}
                // Skip and report; the others still sync (R-ENG-L3).
                Err(e) => report.skipped.push(format!("{id}: {e}")),
            }
        }
        drop(results);
        for name in self.objects.stale(ns, &ids) {
            self.objects.release(ns, &name).await?;
            report.pruned += 1;
        }
        Ok(report)
    }

    async fn on_event(&self, ns: &str, ev: rdd_proto::v1::Event) -> Result<(), MirrorError> {
        if ev.r#type != "container" || ev.actor_id.is_empty() {
            return Ok(());
        }
        match ev.action.as_str() {
            "destroy" => self.objects.release(ns, &ev.actor_id).await,
            a if ACTIONS.contains(&a) => self.inspect_apply(ns, &ev.actor_id).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    async fn sweep(&self, ns: &str) -> Result<SweepReport, MirrorError> {
        let mut r = sweep(&self.objects.api(ns), self.sweep_wait).await?;
        let cns: Api<ContainerNamespace> = Api::namespaced(self.client().clone(), ns);
        let c = sweep(&cns, self.sweep_wait).await?;
        r.deleted += c.deleted;
        r.blocked.extend(c.blocked);
        Ok(r)
    }

    /// The container-controller owns NS repair (`docs/architecture.md`).
    fn owns_namespace(&self) -> bool {
        true
    }

    async fn namespace_gone(&self, ns: &str) -> Result<(), MirrorError> {
        self.ensure_namespaces(ns).await
    }
}

/// Repair ContainerNamespace `moby` when it is deleted while the session is connected
/// (R-ENG-D2): a user delete returns at once (no finalizer) and a new `moby` follows.
pub async fn repair_moby(
    containers: std::sync::Arc<Containers>,
    state: tokio::sync::watch::Receiver<rdd_mirror::session::EngineState>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<ContainerNamespace> = Api::all(containers.client().clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = events.next() => ev,
        };
        let deleted = match ev {
            None => return,
            Some(Ok(watcher::Event::Delete(o))) => o,
            Some(_) => continue,
        };
        let st = state.borrow().clone();
        if !st.connected || deleted.name_any() != MOBY || deleted.namespace() != st.ns {
            continue;
        }
        let ns = st.ns.unwrap_or_default();
        // While NS is being deleted, its content goes with it; the session recreates NS and
        // `moby` once NS is gone.
        match rdd_mirror::deletion::namespace_terminating(containers.client(), &ns).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, %ns, "reading the namespace"),
        }
        if let Err(e) = containers.ensure_namespaces(&ns).await {
            tracing::warn!(error = %e, %ns, "repairing containernamespace moby");
        }
    }
}
