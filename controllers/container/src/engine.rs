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
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use rdd_api::containers::{Container, ContainerNamespace, ContainerStatus};
use rdd_kit::apply::Applier;
use rdd_kit::conditions;
use rdd_kit::finalizer::{self, Plan};
use rdd_mirror::gateway::{Gateway, is_not_found};
use rdd_mirror::session::{MirrorKind, SyncReport};
use rdd_mirror::sweep::{SweepReport, sweep};
use rdd_mirror::{FINALIZER, MirrorError, is_api_status};
use rdd_proto::v1::{ContainerRef, ListContainersRequest};
use serde_json::json;
use tracing::Instrument;

use crate::mirror;

/// Field manager of the mirror (everything in `status` but conditions and lastAction).
pub const FIELD_MANAGER: &str = "container-controller";
/// Field manager of `status.conditions` (resources.md §5.2.2).
pub const CONDITIONS_MANAGER: &str = "container-controller-conditions";

/// Container events that change what a mirror shows; `destroy` releases it.
pub const ACTIONS: &[&str] = &[
    "create", "start", "stop", "die", "pause", "unpause", "restart", "rename", "destroy",
];

pub struct Containers {
    pub client: Client,
    pub gateway: Gateway,
    /// Informer copy of every Container (all namespaces).
    pub store: Store<Container>,
    /// Docker label filters (`key` or `key=value`), from the configured selector.
    pub labels: Vec<String>,
    pub concurrency: usize,
    pub sweep_wait: Duration,
}

/// `a=b,c` → Docker label filters `["a=b", "c"]` (equality terms only).
pub fn docker_label_filters(selector: &str) -> Vec<String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
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
    fn api(&self, ns: &str) -> Api<Container> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Inspect `id` and apply its mirror; `None` when the container is gone.
    async fn inspect_apply(&self, ns: &str, id: &str) -> Result<Option<Applied>, MirrorError> {
        let mut gw = self.gateway.clone();
        let c = match gw
            .inspect_container(ContainerRef { id: id.to_string() })
            .instrument(tracing::debug_span!("gateway", call = "InspectContainer", %id))
            .await
        {
            Ok(c) => c.into_inner(),
            Err(s) if is_not_found(&s) => return Ok(None),
            Err(s) => return Err(s.into()),
        };
        let status = mirror::status(&c);
        self.apply(ns, &c.id, status).await.map(Some)
    }

    /// Bring mirror `name` to `desired`, writing only what differs from the informer's copy.
    pub async fn apply(
        &self,
        ns: &str,
        name: &str,
        desired: ContainerStatus,
    ) -> Result<Applied, MirrorError> {
        let api = self.api(ns);
        let mut done = Applied::default();
        let existing = match self.store.get(&ObjectRef::new(name).within(ns)) {
            Some(o) => (*o).clone(),
            None => {
                let mut obj = Container::new(name, Default::default());
                obj.metadata.namespace = Some(ns.to_string());
                obj.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                match api.create(&pp, &obj).await {
                    Ok(o) => {
                        done.created = true;
                        o
                    }
                    // The informer lags: it exists, read it.
                    Err(e) if is_api_status(&e, 409) => match api.get_opt(name).await? {
                        Some(o) => o,
                        None => return Ok(done),
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // Only a live mirror gets our finalizer back (R-ENG-S6).
        if finalizer::plan(&existing, FINALIZER) == Plan::Add {
            finalizer::ensure(&api, name, FINALIZER).await?;
            done.created = true;
        }
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

    /// Docker no longer has `name`: strip our finalizer, then delete the mirror (no Docker call).
    pub async fn release(&self, ns: &str, name: &str) -> Result<(), MirrorError> {
        let api = self.api(ns);
        finalizer::remove(&api, name, FINALIZER).await?;
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_api_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Namespace NS and ContainerNamespace `moby` exist (R-ENG-D2); applied only here, on a
    /// full sync or a repair, never per event (R-ENG-D6). `moby` carries no finalizer.
    pub async fn ensure_namespaces(&self, ns: &str) -> Result<(), MirrorError> {
        let nss: Api<Namespace> = Api::all(self.client.clone());
        if nss.get_opt(ns).await?.is_none() {
            let mut n = Namespace::default();
            n.metadata.name = Some(ns.to_string());
            match nss.create(&PostParams::default(), &n).await {
                Ok(_) => tracing::info!(%ns, "namespace recreated"),
                Err(e) if is_api_status(&e, 409) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let cns = cns_api(&self.client, ns);
        if cns.get_opt("moby").await?.is_none() {
            Applier::new(FIELD_MANAGER)
                .object(&cns, "moby", json!({"metadata": {}}))
                .await?;
            tracing::info!(%ns, "containernamespace moby applied");
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
        self.store
            .wait_until_ready()
            .await
            .map_err(|e| MirrorError::Other(format!("container informer: {e}")))?;
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
        let mut results = futures::stream::iter(list.into_iter().map(|c| async move {
            let r = self.inspect_apply(ns, &c.id).await;
            (c.id, r)
        }))
        .buffer_unordered(self.concurrency.max(1));
        while let Some((id, r)) = results.next().await {
            match r {
                Ok(Some(a)) if a.wrote() => report.applied += 1,
                Ok(_) => {}
                // Skip and report; the others still sync (R-ENG-L3).
                Err(e) => report.skipped.push(format!("{id}: {e}")),
            }
        }
        drop(results);
        let stale: Vec<String> = self
            .store
            .state()
            .iter()
            .filter(|m| m.namespace().as_deref() == Some(ns) && !ids.contains(&m.name_any()))
            .map(|m| m.name_any())
            .collect();
        for name in stale {
            self.release(ns, &name).await?;
            report.pruned += 1;
        }
        Ok(report)
    }

    async fn on_event(&self, ns: &str, ev: rdd_proto::v1::Event) -> Result<(), MirrorError> {
        if ev.r#type != "container" || ev.actor_id.is_empty() {
            return Ok(());
        }
        match ev.action.as_str() {
            "destroy" => self.release(ns, &ev.actor_id).await,
            a if ACTIONS.contains(&a) => self.inspect_apply(ns, &ev.actor_id).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    async fn sweep(&self, ns: &str) -> Result<SweepReport, MirrorError> {
        let mut r = sweep(&self.api(ns), self.sweep_wait).await?;
        let c = sweep(&cns_api(&self.client, ns), self.sweep_wait).await?;
        r.deleted += c.deleted;
        r.blocked.extend(c.blocked);
        Ok(r)
    }
}

/// ContainerNamespace has no spec and no status (resources.md §5.1): read it as metadata only.
fn cns_api(client: &Client, ns: &str) -> Api<PartialObjectMeta<ContainerNamespace>> {
    Api::namespaced(client.clone(), ns)
}

/// Repair ContainerNamespace `moby` when it is deleted while the session is connected
/// (R-ENG-D2): a user delete returns at once (no finalizer) and a new `moby` follows.
pub async fn repair_moby(
    containers: std::sync::Arc<Containers>,
    state: tokio::sync::watch::Receiver<rdd_mirror::session::EngineState>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<PartialObjectMeta<ContainerNamespace>> = Api::all(containers.client.clone());
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
        if !st.connected || deleted.name_any() != "moby" || deleted.namespace() != st.ns {
            continue;
        }
        let ns = st.ns.unwrap_or_default();
        if let Err(e) = containers.ensure_namespaces(&ns).await {
            tracing::warn!(error = %e, %ns, "repairing containernamespace moby");
        }
    }
}
