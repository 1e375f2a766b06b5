//! The Image reconciler: API-side deletion forwarding. Mirrors themselves are written by the
//! engine session (`engine.rs`); this reconciler wakes only for generation, labels,
//! annotations, finalizers and the deletion timestamp (the kit's predicates), so an idle mirror
//! costs nothing (R-ENG-D1).
//!
//! The rows before the Docker call are `rdd_mirror::deletion`'s (not ours, live, NS
//! terminating → release without a Docker call, not connected → wait, foreign finalizers →
//! report). Forwarding a delete follows [`mirror::check`] and [`mirror::decide`]:
//!
//! | mirror status | inspect | Docker call |
//! |---|---|---|
//! | no `id`, no `repoTag` | — | none, release (R-ENG-S4) |
//! | `repoTag` | the tag names `status.id` | `RemoveImage(tag)`: untags only that tag; never forced, parents kept (R-ENG-S3) |
//! | `repoTag` | the tag is gone or names another image | none, release (R-ENG-S3) |
//! | dangling | gone, or tagged now | none, release |
//! | dangling | still untagged | `RemoveImage(id)` |
//!
//! Docker's answer then follows `rdd_mirror::deletion::conclude`: removed or gone → release; a
//! conflict (an image in use by a container) → `DeletionBlocked=True/Conflict` with Docker's
//! message and a Warning event, finalizer kept, retried with a growing delay (≤ 30 s) until the
//! container is gone; other errors → retried with the runner's backoff.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use rdd_api::containers::Image;
use rdd_kit::events::Recorder;
use rdd_mirror::MirrorError;
use rdd_mirror::deletion::{self, Preamble, Removal};
use rdd_mirror::session::EngineState;
use rdd_proto::v1 as pb;
use tokio::sync::watch;
use tracing::Instrument;

use crate::engine::{CONDITIONS_MANAGER, Images};
use crate::mirror::{self, Decision};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Mirror(#[from] MirrorError),
    #[error("removing the image in Docker: {0}")]
    Docker(#[from] tonic::Status),
}

pub struct Ctx {
    pub client: Client,
    pub images: Arc<Images>,
    pub state: watch::Receiver<EngineState>,
    pub recorder: Recorder,
}

pub async fn reconcile(img: Arc<Image>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let state = ctx.state.borrow().clone();
    let ns = img.namespace().unwrap_or_default();
    let api: Api<Image> = Api::namespaced(ctx.client.clone(), &ns);
    if let Preamble::Done(action) =
        deletion::before_removal(&ctx.client, &api, &*img, &state).await?
    {
        return Ok(action);
    }
    let removal = remove(&ctx.images, img.status.as_ref()).await?;
    let conds = img
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    Ok(deletion::conclude(
        &api,
        &*img,
        removal,
        &conds,
        CONDITIONS_MANAGER,
        &ctx.recorder,
    )
    .await?)
}

/// The Docker side of a mirror delete (the table above).
async fn remove(
    images: &Images,
    status: Option<&rdd_api::containers::ImageStatus>,
) -> Result<Removal, tonic::Status> {
    let check = mirror::check(status);
    let inspected = match &check {
        mirror::Check::NoIdentity => None,
        mirror::Check::Tag { tag, .. } => images.inspect(tag).await?,
        mirror::Check::Dangling { id } => images.inspect(id).await?,
    };
    match mirror::decide(&check, inspected.as_ref()) {
        Decision::NoCall(why) => Ok(Removal::NoCall(why)),
        Decision::Remove(reference) => {
            let mut gw = images.gateway.clone();
            let r = gw
                .remove_image(pb::ImageRef {
                    reference: reference.clone(),
                })
                .instrument(tracing::info_span!("gateway", call = "RemoveImage", %reference))
                .await;
            if let Ok(done) = &r {
                let done = done.get_ref();
                tracing::info!(untagged = ?done.untagged, deleted = ?done.deleted, "RemoveImage");
            }
            Removal::from_gateway(r)
        }
    }
}
