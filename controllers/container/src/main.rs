//! The container-controller binary: the shared mirror process (`rdd_mirror::process`) with the
//! Container kind, its reconciler (actions, deletion forwarding) and the `moby` repair task.

use container_controller::engine::{Containers, FIELD_MANAGER, repair_moby};
use container_controller::reconcile::{Ctx, reconcile};
use std::sync::Arc;

use container_controller::logs::Logs;
use rdd_api::containers::Container;
use rdd_mirror::process::{Binary, Started, run};
use rdd_process::instance::Instance;

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

/// The `engine` controller's passthrough endpoints (`logs`, controllers.md §4.15) on the
/// instance's passthrough socket, and the instance's Docker CLI context (§4.14), which follows
/// the same session state.
fn serve_engine_endpoints(s: &Started<Container>) {
    let inst = match Instance::from_env() {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "no instance: the logs endpoint and Docker context are off");
            return;
        }
    };
    let logs = Arc::new(Logs {
        client: s.client.clone(),
        gateway: s.gateway.clone(),
        state: s.state.clone(),
    });
    match container_controller::docker_context::config_dir() {
        Some(dir) => {
            let store = container_controller::docker_context::Store {
                dir,
                name: inst.name(),
                host: inst.docker_host(),
            };
            // Awaited on shutdown: `rdd svc stop` must leave no context behind (§4.14).
            s.spawn_awaited(container_controller::docker_context::follow(
                store,
                s.state.clone(),
                s.shutdown.clone(),
            ));
        }
        None => tracing::warn!("neither DOCKER_CONFIG nor HOME is set: no Docker context"),
    }
    let socket = inst.passthrough_socket("engine");
    let shutdown = s.shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = container_controller::logs::serve(&socket, logs, shutdown).await {
            tracing::error!(error = %e, socket = %socket.display(), "the logs endpoint failed");
        }
    });
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = run(
        BINARY,
        Containers::new,
        |s, kind| {
            tokio::spawn(repair_moby(kind, s.state.clone(), s.shutdown.clone()));
            serve_engine_endpoints(s);
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
