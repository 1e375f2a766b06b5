//! The image side of the engine session: full sync, per-event reconcile of one image, prune,
//! sweep (controllers.md §4.5, §4.6, §4.7.3).
//!
//! *Reconcile image by reference* (pull, import, load, tag, untag; the untag event names only
//! the image, never the removed tag):
//!
//! | inspect of the reference | step |
//! |---|---|
//! | not found | release every mirror whose `status.id` is the reference |
//! | found, outside the label selector | release every mirror of its ID |
//! | found | apply one mirror per tag (or the dangling mirror); release the other mirrors of its ID (an untag removes only that tag's mirror; the last untag of a used image turns into the dangling mirror; tagging a dangling image replaces it); release mirrors of its tags that name another ID (the tag moved here) and reconcile those images once, so an image that lost its last tag this way gets its dangling mirror |
//!
//! `delete` releases every mirror of the image ID. Every write compares with the informer's
//! copy first; a new mirror is created with a plain create (never an apply that could re-add our
//! finalizer to a terminating mirror, R-ENG-S6).

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use rdd_api::containers::{Image, ImageStatus};
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
pub const FIELD_MANAGER: &str = "image-controller";
/// Field manager of `status.conditions` (`DeletionBlocked`).
pub const CONDITIONS_MANAGER: &str = "image-controller-conditions";

/// Image events that change the tag set of an image; `delete` releases its mirrors.
pub const ACTIONS: &[&str] = &["pull", "import", "load", "tag", "untag", "delete"];

pub struct Images {
    pub objects: Objects<Image>,
    pub gateway: Gateway,
    /// Docker label filters from the configured selector.
    pub labels: Vec<String>,
    pub concurrency: usize,
    pub sweep_wait: Duration,
}

impl Images {
    pub fn new(s: &Started<Image>) -> Images {
        Images {
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

    /// Inspect `reference`; `None` when Docker has no such image.
    pub async fn inspect(&self, reference: &str) -> Result<Option<pb::Image>, tonic::Status> {
        let mut gw = self.gateway.clone();
        match gw
            .inspect_image(pb::ImageRef {
                reference: reference.to_string(),
            })
            .instrument(tracing::debug_span!("gateway", call = "InspectImage", %reference))
            .await
        {
            Ok(i) => Ok(Some(i.into_inner())),
            Err(s) if is_not_found(&s) => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Bring mirror `name` to `desired`; returns whether anything was written.
    async fn apply_one(
        &self,
        ns: &str,
        name: &str,
        desired: ImageStatus,
    ) -> Result<bool, MirrorError> {
        let Some((existing, ensured)) = self
            .objects
            .ensure(ns, name, |n| Image::new(n, Default::default()))
            .await?
        else {
            return Ok(false);
        };
        let mut wrote = ensured.created || ensured.finalizer_added;
        let current = existing.status.clone().unwrap_or_default();
        if mirror::owned_part(&current) != desired {
            let body = serde_json::to_value(&desired)?;
            Applier::new(FIELD_MANAGER)
                .status(&self.objects.api(ns), name, body)
                .await?;
            wrote = true;
        }
        Ok(wrote)
    }

    /// Apply every mirror of `image`; returns the names and whether anything was written.
    async fn apply_image(
        &self,
        ns: &str,
        image: &pb::Image,
    ) -> Result<(Vec<String>, bool), MirrorError> {
        let mut names = Vec::new();
        let mut wrote = false;
        for (name, status) in mirror::desired(image) {
            wrote |= self.apply_one(ns, &name, status).await?;
            names.push(name);
        }
        Ok((names, wrote))
    }

    /// Cached mirrors in `ns` matching `f`.
    fn mirrors_where(&self, ns: &str, f: impl Fn(&ImageStatus) -> bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .objects
            .in_namespace(ns)
            .iter()
            .filter(|m| m.status.as_ref().is_some_and(&f))
            .map(|m| m.name_any())
            .collect();
        out.sort();
        out
    }

    /// Release every mirror whose `status.id` is `id`.
    pub async fn release_id(&self, ns: &str, id: &str) -> Result<(), MirrorError> {
        for name in self.mirrors_where(ns, |s| s.id == id) {
            self.objects.release(ns, &name).await?;
        }
        Ok(())
    }

    /// Reconcile image by reference (the table above).
    pub async fn reconcile_ref(&self, ns: &str, reference: &str) -> Result<(), MirrorError> {
        let moved = self.reconcile_one(ns, reference).await?;
        // Images that lost a tag to this one: once, without following further moves.
        for old in moved {
            self.reconcile_one(ns, &old).await?;
        }
        Ok(())
    }

    /// One image; returns the IDs whose mirrors of this image's tags were released (moved tags).
    async fn reconcile_one(&self, ns: &str, reference: &str) -> Result<Vec<String>, MirrorError> {
        let Some(image) = self.inspect(reference).await? else {
            self.release_id(ns, reference).await?;
            return Ok(Vec::new());
        };
        if !labels::matches(&self.labels, &image.labels) {
            self.release_id(ns, &image.id).await?;
            return Ok(Vec::new());
        }
        let (names, _) = self.apply_image(ns, &image).await?;
        let keep: HashSet<&String> = names.iter().collect();
        for name in self.mirrors_where(ns, |s| s.id == image.id) {
            if !keep.contains(&name) {
                self.objects.release(ns, &name).await?;
            }
        }
        let tags: HashSet<String> = mirror::tags(&image.repo_tags).into_iter().collect();
        let mut moved = BTreeSet::new();
        for m in self.objects.in_namespace(ns) {
            let Some(s) = m.status.as_ref() else { continue };
            if s.id != image.id && s.repo_tag.as_ref().is_some_and(|t| tags.contains(t)) {
                self.objects.release(ns, &m.name_any()).await?;
                if !s.id.is_empty() {
                    moved.insert(s.id.clone());
                }
            }
        }
        Ok(moved.into_iter().collect())
    }
}

impl MirrorKind for Images {
    fn plural(&self) -> &'static str {
        "Images"
    }

    fn event_types(&self) -> Vec<String> {
        vec!["image".into()]
    }

    fn event_actions(&self) -> Vec<String> {
        ACTIONS.iter().map(|s| s.to_string()).collect()
    }

    /// List all images, keep the names their summaries give (so a failed inspect never prunes
    /// a valid mirror), inspect and apply each with bounded concurrency, release the rest.
    async fn full_sync(&self, ns: &str) -> Result<SyncReport, MirrorError> {
        // Not `store.wait_until_ready()`: the runner waits on that, and it wakes one waiter.
        self.objects.wait_ready().await?;
        let mut gw = self.gateway.clone();
        let list = gw
            .list_images(pb::ListImagesRequest {
                all: true,
                label: self.labels.clone(),
            })
            .instrument(tracing::info_span!("gateway", call = "ListImages"))
            .await?
            .into_inner()
            .images;
        let mut keep: HashSet<String> = list
            .iter()
            .flat_map(|s| mirror::names(&s.id, &s.repo_tags))
            .collect();
        let mut report = SyncReport {
            listed: list.len(),
            ..Default::default()
        };
        // Two bounded stages: inspects, then one apply per mirror. An image with many tags
        // spreads its mirrors over the apply stage instead of writing them one after another.
        let conc = self.concurrency.max(1);
        let mut inspected = futures::stream::iter(list.into_iter().map(|s| async move {
            let r = self.inspect(&s.id).await;
            (s.id, r)
        }))
        .buffer_unordered(conc);
        let mut wanted = Vec::new();
        while let Some((id, r)) = inspected.next().await {
            match r {
                Ok(Some(image)) => {
                    for (name, status) in mirror::desired(&image) {
                        // Tags added between the list and the inspect are kept too.
                        keep.insert(name.clone());
                        wanted.push((id.clone(), name, status));
                    }
                }
                Ok(None) => {}
                // Skip and report; the others still sync (R-ENG-L3).
                Err(e) => report.skipped.push(format!("{id}: {e}")),
            }
        }
        drop(inspected);
        let mut results =
            futures::stream::iter(wanted.into_iter().map(|(id, name, status)| async move {
                let r = self.apply_one(ns, &name, status).await;
                (id, name, r)
            }))
            .buffer_unordered(conc);
        let mut wrote = HashSet::new();
        while let Some((id, name, r)) = results.next().await {
            match r {
                Ok(true) => {
                    wrote.insert(id);
                }
                Ok(false) => {}
                Err(e) => report.skipped.push(format!("{id} ({name}): {e}")),
            }
        }
        report.applied = wrote.len();
        drop(results);
        for name in self.objects.stale(ns, &keep) {
            self.objects.release(ns, &name).await?;
            report.pruned += 1;
        }
        Ok(report)
    }

    async fn on_event(&self, ns: &str, ev: pb::Event) -> Result<(), MirrorError> {
        if ev.r#type != "image" || ev.actor_id.is_empty() {
            return Ok(());
        }
        match ev.action.as_str() {
            "delete" => self.release_id(ns, &ev.actor_id).await,
            a if ACTIONS.contains(&a) => self.reconcile_ref(ns, &ev.actor_id).await,
            _ => Ok(()),
        }
    }

    async fn sweep(&self, ns: &str) -> Result<SweepReport, MirrorError> {
        sweep(&self.objects.api(ns), self.sweep_wait).await
    }
}
