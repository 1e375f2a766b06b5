//! The volume side of the engine session (controllers.md §4.5, §4.6, §4.7.2): full sync from
//! the list (no per-volume inspect), `create` → inspect and apply, `destroy` → release, prune,
//! sweep. Volume events carry no labels, so the subscription is unfiltered and a configured
//! label selector is applied to what the inspect returns.
//!
//! Every write compares with the informer's copy first; a new mirror is created with a plain
//! create (never an apply that could re-add our finalizer to a terminating mirror, R-ENG-S6).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use rdd_api::containers::{Volume, VolumeStatus};
use rdd_kit::apply::Applier;
use rdd_mirror::gateway::{Gateway, is_not_found};
use rdd_mirror::objects::Objects;
use rdd_mirror::process::Started;
use rdd_mirror::session::{MirrorKind, SyncReport};
use rdd_mirror::sweep::{SweepReport, sweep};
use rdd_mirror::{MirrorError, labels};
use rdd_proto::v1 as pb;
use tracing::Instrument;

use crate::mirror;

/// Field manager of the mirror status (everything but conditions).
pub const FIELD_MANAGER: &str = "volume-controller";
/// Field manager of `status.conditions` (`DeletionBlocked`).
pub const CONDITIONS_MANAGER: &str = "volume-controller-conditions";

pub const ACTIONS: &[&str] = &["create", "destroy"];

pub struct Volumes {
    pub objects: Objects<Volume>,
    pub gateway: Gateway,
    /// Docker label filters from the configured selector.
    pub labels: Vec<String>,
    /// Mirrors applied at once during a full sync.
    pub concurrency: usize,
    pub sweep_wait: Duration,
}

impl Volumes {
    pub fn new(s: &Started<Volume>) -> Volumes {
        Volumes {
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

    /// Bring the mirror of `v` to its status; returns whether anything was written.
    async fn apply(&self, ns: &str, v: &pb::Volume) -> Result<bool, MirrorError> {
        let desired: VolumeStatus = mirror::status(v).map_err(MirrorError::Other)?;
        let name = mirror::name(&v.name);
        let Some((existing, ensured)) = self
            .objects
            .ensure(ns, &name, |n| Volume::new(n, Default::default()))
            .await?
        else {
            return Ok(false);
        };
        let mut wrote = ensured.created || ensured.finalizer_added;
        let current = existing.status.clone().unwrap_or_default();
        if mirror::owned_part(&current) != desired {
            let body = serde_json::to_value(&desired)?;
            Applier::new(FIELD_MANAGER)
                .status(&self.objects.api(ns), &name, body)
                .await?;
            wrote = true;
        }
        Ok(wrote)
    }

    /// A `create` event: inspect the volume and apply its mirror when it matches the selector.
    async fn created(&self, ns: &str, volume: &str) -> Result<(), MirrorError> {
        let mut gw = self.gateway.clone();
        let v = match gw
            .inspect_volume(pb::VolumeRef {
                name: volume.to_string(),
            })
            .instrument(tracing::debug_span!("gateway", call = "InspectVolume", %volume))
            .await
        {
            Ok(v) => v.into_inner(),
            Err(s) if is_not_found(&s) => return Ok(()),
            Err(s) => return Err(s.into()),
        };
        if labels::matches(&self.labels, &v.labels) {
            self.apply(ns, &v).await?;
        }
        Ok(())
    }
}

impl MirrorKind for Volumes {
    fn plural(&self) -> &'static str {
        "Volumes"
    }

    fn event_types(&self) -> Vec<String> {
        vec!["volume".into()]
    }

    fn event_actions(&self) -> Vec<String> {
        ACTIONS.iter().map(|s| s.to_string()).collect()
    }

    /// List (by label), apply each entry as listed, release mirrors of volumes not listed.
    async fn full_sync(&self, ns: &str) -> Result<SyncReport, MirrorError> {
        // Not `store.wait_until_ready()`: the runner waits on that, and it wakes one waiter.
        self.objects.wait_ready().await?;
        let mut gw = self.gateway.clone();
        let list = gw
            .list_volumes(pb::ListVolumesRequest {
                label: self.labels.clone(),
            })
            .instrument(tracing::info_span!("gateway", call = "ListVolumes"))
            .await?
            .into_inner()
            .volumes;
        let keep: HashSet<String> = list.iter().map(|v| mirror::name(&v.name)).collect();
        let mut report = SyncReport {
            listed: list.len(),
            ..Default::default()
        };
        // The list carries every field a mirror shows: no inspect, only bounded applies.
        let mut results = futures::stream::iter(list.into_iter().map(|v| async move {
            let r = self.apply(ns, &v).await;
            (v.name, r)
        }))
        .buffer_unordered(self.concurrency.max(1));
        while let Some((name, r)) = results.next().await {
            match r {
                Ok(wrote) => report.applied += wrote as usize,
                // Skip and report; the others still sync (R-ENG-L3).
                Err(e) => report.skipped.push(format!("{name}: {e}")),
            }
        }
        drop(results);
        for name in self.objects.stale(ns, &keep) {
            self.objects.release(ns, &name).await?;
            report.pruned += 1;
        }
        Ok(report)
    }

    async fn on_event(&self, ns: &str, ev: pb::Event) -> Result<(), MirrorError> {
        if ev.r#type != "volume" || ev.actor_id.is_empty() {
            return Ok(());
        }
        match ev.action.as_str() {
            "create" => self.created(ns, &ev.actor_id).await,
            // Unfiltered (volume events carry no labels): a volume never mirrored costs nothing.
            "destroy" => {
                self.objects
                    .release_known(ns, &mirror::name(&ev.actor_id))
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn sweep(&self, ns: &str) -> Result<SweepReport, MirrorError> {
        sweep(&self.objects.api(ns), self.sweep_wait).await
    }
}
