//! The image-controller binary: the shared mirror process (`rdd_mirror::process`) with the
//! Image kind and its deletion-forwarding reconciler.

use image_controller::engine::{FIELD_MANAGER, Images};
use image_controller::reconcile::{Ctx, reconcile};
use rdd_kit::events::Recorder;
use rdd_mirror::process::{Binary, run};

const BINARY: Binary = Binary {
    name: FIELD_MANAGER,
    about: "The image-controller: mirrors the instance's Docker images as Image objects (one \
per tag, or one for a dangling image, through the docker-gateway), forwards API deletes to Docker \
(untag by reference, never forced), and reports ImagesSynced on the App.",
    objects: "images",
    controller: "image",
    serves: &["image"],
    synced_type: "ImagesSynced",
    synced_message: "Images synced",
    // Image `delete` events carry no labels: filter after the inspect.
    selector_in_subscription: false,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = run(
        BINARY,
        Images::new,
        |s, images| Ctx {
            client: s.client.clone(),
            images,
            state: s.state.clone(),
            recorder: Recorder::new(s.client.clone(), FIELD_MANAGER),
        },
        reconcile,
    )
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image-controller: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
