//! The Volume reconciler: API-side deletion forwarding. Mirrors themselves are written by the
//! engine session (`engine.rs`); this reconciler wakes only for generation, labels,
//! annotations, finalizers and the deletion timestamp (the kit's predicates), so an idle mirror
//! costs nothing (R-ENG-D1).
//!
//! The rows before the Docker call are `rdd_mirror::deletion`'s (not ours, live, NS
//! terminating → release without a Docker call, not connected → wait, foreign finalizers →
//! report). Then:
//!
//! | mirror status | Docker call |
//! |---|---|
//! | empty `name` | none, release (R-ENG-S4) |
//! | `name` | `RemoveVolume(name, force)` (controllers.md §4.10; Docker's force does not remove a volume in use) |
//!
//! Docker's answer follows `rdd_mirror::deletion::conclude`: removed or gone → release; a
//! conflict (a volume in use by a container) → `DeletionBlocked=True/Conflict` with Docker's
//! message and a Warning event, finalizer kept, retried with a growing delay (≤ 30 s) until the
//! container is gone; other errors → retried with the runner's backoff.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use rdd_api::containers::Volume;
use rdd_kit::events::Recorder;
use rdd_mirror::MirrorError;
use rdd_mirror::deletion::{self, Preamble, Removal};
use rdd_mirror::gateway::Gateway;
use rdd_mirror::session::EngineState;
use rdd_proto::v1 as pb;
use tokio::sync::watch;
use tracing::Instrument;

use crate::engine::CONDITIONS_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Mirror(#[from] MirrorError),
    #[error("removing the volume in Docker: {0}")]
    Docker(#[from] tonic::Status),
}

pub struct Ctx {
    pub client: Client,
    pub gateway: Gateway,
    pub state: watch::Receiver<EngineState>,
    pub recorder: Recorder,
}

pub async fn reconcile(vol: Arc<Volume>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let state = ctx.state.borrow().clone();
    let ns = vol.namespace().unwrap_or_default();
    let api: Api<Volume> = Api::namespaced(ctx.client.clone(), &ns);
    if let Preamble::Done(action) =
        deletion::before_removal(&ctx.client, &api, &*vol, &state).await?
    {
        return Ok(action);
    }
    let name = vol
        .status
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let removal = if name.is_empty() {
        Removal::NoCall("no Docker identity".into())
    } else {
        let mut gw = ctx.gateway.clone();
        let r = gw
            .remove_volume(pb::RemoveVolumeRequest {
                name: name.clone(),
                force: true,
            })
            .instrument(tracing::info_span!("gateway", call = "RemoveVolume", volume = %name))
            .await;
        Removal::from_gateway(r)?
    };
    let conds = vol
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    Ok(deletion::conclude(
        &api,
        &*vol,
        removal,
        &conds,
        CONDITIONS_MANAGER,
        &ctx.recorder,
    )
    .await?)
}
