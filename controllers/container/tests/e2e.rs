//! The container-controller against real Docker, the docker-gateway and `rdd svc serve`, all as
//! real processes (see `support`). Build the other binaries first:
//! `cargo build -p rdd -p docker-gateway`. Test names carry the invariant IDs they check.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rdd_api::containers::{Container, ContainerStatusValue};
use rdd_testkit::docker;
use serde_json::json;
use support::{Env, watch_for};

const T: Duration = Duration::from_secs(60);

fn status_of(c: &Container) -> Option<ContainerStatusValue> {
    c.status.as_ref().map(|s| s.status)
}

fn docker_status(id: &str) -> String {
    docker(&["inspect", "-f", "{{.State.Status}}", id])
}

/// Mirrors equal `docker ps -a` of the scope: same IDs, same states.
fn equal_to_docker(env: &Env, m: &BTreeMap<String, Container>) -> bool {
    let d = env.docker_state();
    d.len() == m.len()
        && d.iter().all(|(id, st)| {
            m.get(id).and_then(status_of).map(|s| {
                serde_json::to_value(s).unwrap().as_str().unwrap_or("").to_string()
            }) == Some(st.clone())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_l3_fifty_containers_in_mixed_states_then_the_event_path() {
    let mut env = Env::start().await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let id = match i % 4 {
            0 => env.container(&format!("c{i}"), false, &[], &["sleep", "1000"]),
            1 => env.container(&format!("c{i}"), true, &[], &["sleep", "1000"]),
            2 => env.container(&format!("c{i}"), true, &[], &["true"]),
            _ => {
                let id = env.container(&format!("c{i}"), true, &[], &["sleep", "1000"]);
                docker(&["pause", &id]);
                id
            }
        };
        ids.push(id);
    }
    // One with six published ports (R-ENG-I4) and one in a container namespace-style name.
    let ports: Vec<String> = (0..6).map(|i| format!("127.0.0.1::{}", 8000 + i)).collect();
    let mut extra = Vec::new();
    for p in &ports {
        extra.extend(["-p", p.as_str()]);
    }
    let pid = env.container("ports", true, &extra, &["sleep", "1000"]);
    // Let `true` containers exit before the sync.
    std::thread::sleep(Duration::from_millis(500));
    env.start_controller();
    env.wait_synced("Connected", T).await;
    let m = env
        .wait_mirrors("51 mirrors equal docker ps -a", T, |m| equal_to_docker(&env, m))
        .await;
    assert_eq!(m.len(), 51);
    // Field check against docker inspect for each.
    for id in ids.iter().chain([&pid]) {
        let c = &m[id];
        let s = c.status.as_ref().unwrap();
        let name = docker(&["inspect", "-f", "{{.Name}}", id]);
        assert_eq!(format!("/{}", s.name), name);
        assert_eq!(s.namespace, "moby");
        assert_eq!(s.image, docker(&["inspect", "-f", "{{.Image}}", id]));
        assert_eq!(s.path, docker(&["inspect", "-f", "{{.Path}}", id]));
        assert_eq!(s.labels.get("rdd-test").map(String::as_str), Some(env.scope.id.as_str()));
        assert!(c.finalizers().iter().any(|f| f == "engine.rancherdesktop.io/mirror"));
        let want = docker_status(id);
        let cond = |t: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status.clone())
                .unwrap_or_default()
        };
        assert_eq!(cond("Running") == "True", want == "running", "{id}: {want}");
        assert_eq!(cond("Paused") == "True", want == "paused", "{id}: {want}");
        assert_eq!(cond("OOMKilled"), "Unknown");
    }
    let p = m[&pid].status.as_ref().unwrap();
    let names: Vec<&str> = p.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["8000/tcp", "8001/tcp", "8002/tcp", "8003/tcp", "8004/tcp", "8005/tcp"]
    );
    assert!(p.ports.iter().all(|p| p.bindings.len() == 1 && p.bindings[0].host_ip == "127.0.0.1"));

    // The event path: each change shows up in its mirror.
    let created = ids[0].clone();
    docker(&["start", &created]);
    env.wait_mirrors("start", T, |m| status_of(&m[&created]) == Some(ContainerStatusValue::Running)).await;
    docker(&["pause", &created]);
    env.wait_mirrors("pause", T, |m| status_of(&m[&created]) == Some(ContainerStatusValue::Paused)).await;
    docker(&["unpause", &created]);
    docker(&["stop", &created]);
    env.wait_mirrors("stop", T, |m| status_of(&m[&created]) == Some(ContainerStatusValue::Exited)).await;
    let new_name = env.scope.name("renamed");
    docker(&["rename", &created, &new_name]);
    env.wait_mirrors("rename", T, |m| m[&created].status.as_ref().unwrap().name == new_name).await;
    docker(&["rm", &created]);
    env.wait_mirrors("rm", T, |m| !m.contains_key(&created)).await;
    let fresh = env.container("fresh", false, &[], &["true"]);
    env.wait_mirrors("create", T, |m| m.contains_key(&fresh)).await;
    let m = env.wait_mirrors("all equal", T, |m| equal_to_docker(&env, m)).await;
    assert_eq!(m.len(), 51);
}
