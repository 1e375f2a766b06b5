//! The container-controller binary: the shared mirror process (`rdd_mirror::process`) with the
//! Container kind, its reconciler (actions, deletion forwarding) and the `moby` repair task.

use container_controller::engine::{Containers, FIELD_MANAGER, repair_moby};
use container_controller::reconcile::{Ctx, reconcile};
use rdd_mirror::process::{Binary, run};

const BINARY: Binary = Binary {
    name: FIELD_MANAGER,
    about: "The container-controller: mirrors the instance's Docker containers as Container \
objects (through the docker-gateway), runs the actions of the containers.rancherdesktop.io/action \
annotation, forwards API deletes to Docker, keeps ContainerNamespace moby and the resource \
Namespace, and reports ContainersSynced on the App.",
    objects: "containers",
    controller: "container",
    serves: &["engine", "container", "containernamespace"],
    synced_type: "ContainersSynced",
    synced_message: "Containers synced",
    selector_in_subscription: true,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = run(
        BINARY,
        Containers::new,
        |s, kind| {
            tokio::spawn(repair_moby(kind, s.state.clone(), s.shutdown.clone()));
            Ctx {
                client: s.client.clone(),
                gateway: s.gateway.clone(),
                state: s.state.clone(),
            }
        },
        reconcile,
    )
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("container-controller: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
