//! The volume-controller binary: the shared mirror process (`rdd_mirror::process`) with the
//! Volume kind and its deletion-forwarding reconciler.

use rdd_kit::events::Recorder;
use rdd_mirror::process::{Binary, run};
use volume_controller::engine::{FIELD_MANAGER, Volumes};
use volume_controller::reconcile::{Ctx, reconcile};

const BINARY: Binary = Binary {
    name: FIELD_MANAGER,
    about: "The volume-controller: mirrors the instance's Docker volumes as Volume objects \
(through the docker-gateway), forwards API deletes to Docker, and reports VolumesSynced on the \
App.",
    objects: "volumes",
    controller: "volume",
    serves: &["volume"],
    synced_type: "VolumesSynced",
    synced_message: "Volumes synced",
    // Volume events carry no labels: filter after the inspect.
    selector_in_subscription: false,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = run(
        BINARY,
        Volumes::new,
        |s, _volumes| Ctx {
            client: s.client.clone(),
            gateway: s.gateway.clone(),
            state: s.state.clone(),
            recorder: Recorder::new(s.client.clone(), FIELD_MANAGER),
        },
        reconcile,
    )
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volume-controller: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
