//! The container-controller against real Docker, the docker-gateway and `rdd svc serve`, all as
//! real processes (see `support`). Build the other binaries first:
//! `cargo build -p rdd -p docker-gateway`. Test names carry the invariant IDs they check.

#[path = "../../mirror/tests/support/mod.rs"]
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
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            }) == Some(st.clone())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_l3_r_eng_d3_fifty_containers_in_mixed_states_then_the_event_path() {
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
    // R-ENG-T5: a stale mirror left from an earlier session (with the finalizer) is pruned.
    let stale = "f".repeat(64);
    let mut obj = Container::new(&stale, Default::default());
    obj.metadata.finalizers = Some(vec!["engine.rancherdesktop.io/mirror".into()]);
    env.containers()
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    env.start_controller();
    env.wait_synced("Connected", T).await;
    let m = env
        .wait_mirrors("51 mirrors equal docker ps -a", T, |m| {
            equal_to_docker(&env, m)
        })
        .await;
    assert_eq!(m.len(), 51);
    assert!(!m.contains_key(&stale), "r_eng_t5: stale mirror pruned");
    // Field check against docker inspect for each.
    for id in ids.iter().chain([&pid]) {
        let c = &m[id];
        let s = c.status.as_ref().unwrap();
        let name = docker(&["inspect", "-f", "{{.Name}}", id]);
        assert_eq!(format!("/{}", s.name), name);
        assert_eq!(s.namespace, "moby");
        assert_eq!(s.image, docker(&["inspect", "-f", "{{.Image}}", id]));
        assert_eq!(s.path, docker(&["inspect", "-f", "{{.Path}}", id]));
        assert_eq!(
            s.labels.get("rdd-test").map(String::as_str),
            Some(env.scope.id.as_str())
        );
        assert!(
            c.finalizers()
                .iter()
                .any(|f| f == "engine.rancherdesktop.io/mirror")
        );
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
    // R-ENG-D3: disjoint owners of the status: the mirror manager owns status.status, the
    // conditions manager only the conditions.
    let mf = serde_json::to_value(&m[&pid].metadata.managed_fields).unwrap();
    let owner = |manager: &str| {
        mf.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["manager"] == manager && e["subresource"] == "status")
            .map(|e| e["fieldsV1"]["f:status"].clone())
            .next()
            .unwrap_or_default()
    };
    let mirror_fields = owner("container-controller");
    let condition_fields = owner("container-controller-conditions");
    assert!(mirror_fields.get("f:status").is_some(), "{mf}");
    assert!(mirror_fields.get("f:conditions").is_none(), "{mf}");
    assert!(condition_fields.get("f:conditions").is_some(), "{mf}");
    assert!(condition_fields.get("f:status").is_none(), "{mf}");
    // R-ENG-I2: the other writer's App condition survives ours.
    assert!(env.app_condition("Running").await.is_some());
    let p = m[&pid].status.as_ref().unwrap();
    let names: Vec<&str> = p.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "8000/tcp", "8001/tcp", "8002/tcp", "8003/tcp", "8004/tcp", "8005/tcp"
        ]
    );
    assert!(
        p.ports
            .iter()
            .all(|p| p.bindings.len() == 1 && p.bindings[0].host_ip == "127.0.0.1")
    );

    // The event path: each change shows up in its mirror.
    let created = ids[0].clone();
    docker(&["start", &created]);
    env.wait_mirrors("start", T, |m| {
        status_of(&m[&created]) == Some(ContainerStatusValue::Running)
    })
    .await;
    docker(&["pause", &created]);
    env.wait_mirrors("pause", T, |m| {
        status_of(&m[&created]) == Some(ContainerStatusValue::Paused)
    })
    .await;
    docker(&["unpause", &created]);
    docker(&["stop", &created]);
    env.wait_mirrors("stop", T, |m| {
        status_of(&m[&created]) == Some(ContainerStatusValue::Exited)
    })
    .await;
    let new_name = env.scope.name("renamed");
    docker(&["rename", &created, &new_name]);
    env.wait_mirrors("rename", T, |m| {
        m[&created].status.as_ref().unwrap().name == new_name
    })
    .await;
    docker(&["rm", &created]);
    env.wait_mirrors("rm", T, |m| !m.contains_key(&created))
        .await;
    let fresh = env.container("fresh", false, &[], &["true"]);
    env.wait_mirrors("create", T, |m| m.contains_key(&fresh))
        .await;
    let m = env
        .wait_mirrors("all equal", T, |m| equal_to_docker(&env, m))
        .await;
    assert_eq!(m.len(), 51);
}

/// Annotate `id` with `action` through kubectl (as a user would) and wait until the controller
/// consumed it; returns `status.lastAction`.
async fn act(env: &Env, id: &str, action: &str) -> serde_json::Value {
    env.kubectl_ok(&[
        "annotate",
        "-n",
        &env.ns,
        "--overwrite",
        &format!("container/{id}"),
        &format!("containers.rancherdesktop.io/action={action}"),
    ]);
    let m = env
        .wait_mirrors("annotation consumed", T, |m| {
            !m[id]
                .annotations()
                .contains_key("containers.rancherdesktop.io/action")
        })
        .await;
    serde_json::to_value(&m[id].status.as_ref().unwrap().last_action).unwrap()
}

/// Wait until the mirror shows Docker's current state.
async fn settle(env: &Env, id: &str) {
    env.wait_mirrors("mirror follows docker", T, |m| {
        m.get(id).and_then(status_of).map(|s| {
            serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap_or("")
                .to_string()
        }) == Some(docker_status(id))
    })
    .await;
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, op: &str) -> u64 {
    after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_i1_r_eng_d4_actions_on_running_and_stopped_containers() {
    let mut env = Env::start().await;
    let stopped = env.container("stopped", false, &[], &["sleep", "1000"]);
    let running = env.container("running", true, &[], &["sleep", "1000"]);
    let exits = env.container("exits", false, &[], &["true"]);
    env.start_controller();
    env.wait_synced("Connected", T).await;
    env.wait_mirrors("3 mirrors", T, |m| m.len() == 3).await;
    for id in [&stopped, &running, &exits] {
        settle(&env, id).await;
    }

    // Stopped (created): stop makes no Docker call (R-ENG-I1).
    let before = env.docker_calls();
    let la = act(&env, &stopped, "stop").await;
    assert_eq!(
        (la["action"].as_str(), la["state"].as_str()),
        (Some("stop"), Some("Succeeded"))
    );
    assert!(
        la["observedAt"].is_string() && la["completedAt"].is_string(),
        "{la}"
    );
    // unpause of a non-running container fails without a call.
    let la = act(&env, &stopped, "unpause").await;
    assert_eq!(la["state"], "Failed");
    assert!(
        la["error"].as_str().unwrap().contains("not running"),
        "{la}"
    );
    let after = env.docker_calls();
    for op in [
        "container_stop",
        "container_unpause",
        "container_start",
        "container_kill",
    ] {
        assert_eq!(
            delta(&before, &after, op),
            0,
            "{op}: {before:?} → {after:?}"
        );
    }
    // pause of a non-running container: Docker refuses, the error is recorded.
    let la = act(&env, &stopped, "pause").await;
    assert_eq!(la["state"], "Failed", "{la}");
    // start, then the whole cycle on the now running container.
    let la = act(&env, &stopped, "start").await;
    assert_eq!(la["state"], "Succeeded", "{la}");
    assert_eq!(docker_status(&stopped), "running");
    settle(&env, &stopped).await;
    for (action, want) in [
        ("pause", "paused"),
        ("unpause", "running"),
        ("restart", "running"),
        ("stop", "exited"),
    ] {
        let la = act(&env, &stopped, action).await;
        assert_eq!(la["state"], "Succeeded", "{action}: {la}");
        assert_eq!(docker_status(&stopped), want, "{action}");
        settle(&env, &stopped).await;
    }
    // Exited: stop again is a no-op without a call.
    let before = env.docker_calls();
    let la = act(&env, &stopped, "stop").await;
    assert_eq!(la["state"], "Succeeded");
    assert_eq!(delta(&before, &env.docker_calls(), "container_stop"), 0);

    // Running: each action works.
    for (action, want) in [
        ("restart", "running"),
        ("pause", "paused"),
        ("stop", "exited"),
        ("start", "running"),
    ] {
        let la = act(&env, &running, action).await;
        assert_eq!(la["state"], "Succeeded", "{action}: {la}");
        assert_eq!(docker_status(&running), want, "{action}");
        settle(&env, &running).await;
    }

    // R-ENG-D4: a container that exits at once, one start → exactly one start call, and none
    // over the next 20 s.
    let before = env.docker_calls();
    let la = act(&env, &exits, "start").await;
    assert_eq!(la["state"], "Succeeded");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = env.docker_calls();
    assert_eq!(
        delta(&before, &after, "container_start"),
        1,
        "{before:?} → {after:?}"
    );
    assert_eq!(docker_status(&exits), "exited");
    // An invalid value cannot even be written (admission policy).
    let (ok, _, err) = env.kubectl(&[
        "annotate",
        "-n",
        &env.ns,
        "--overwrite",
        &format!("container/{exits}"),
        "containers.rancherdesktop.io/action=kill",
    ]);
    assert!(
        !ok && err.contains("invalid containers.rancherdesktop.io/action"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_d1_hundred_idle_mirrors_make_no_api_write_and_no_docker_call() {
    let mut env = Env::start().await;
    for i in 0..100 {
        env.container(&format!("idle{i}"), false, &[], &["true"]);
    }
    env.start_controller();
    env.wait_synced("Connected", T).await;
    let m = env
        .wait_mirrors("100 mirrors", T, |m| {
            m.len() == 100 && equal_to_docker(&env, m)
        })
        .await;
    // Let the creation writes settle, then take the revision to watch from.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rv = env
        .containers()
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    assert_eq!(m.len(), 100);
    let before = env.docker_total();
    let path_c = format!(
        "/apis/containers.rancherdesktop.io/v1alpha1/namespaces/{}/containers?watch=1&resourceVersion={rv}",
        env.ns
    );
    let path_a = format!("/apis/app.rancherdesktop.io/v1alpha1/apps?watch=1&resourceVersion={rv}");
    let client = env.client.clone();
    let (c2, p2) = (client.clone(), path_a.clone());
    let app_watch =
        tokio::spawn(async move { watch_for(&c2, &p2, Duration::from_secs(120)).await });
    // Positive control: the same kind of watch sees the unrelated writes below.
    let (c3, p3) = (
        client.clone(),
        format!(
            "/api/v1/namespaces/{}/configmaps?watch=1&resourceVersion={rv}",
            env.ns
        ),
    );
    let cm_watch = tokio::spawn(async move { watch_for(&c3, &p3, Duration::from_secs(20)).await });
    // Unrelated changes meanwhile: Volume and Image objects in NS, a ConfigMap.
    let ns = env.ns.clone();
    env.kubectl_ok(&[
        "create",
        "configmap",
        "-n",
        &ns,
        "unrelated",
        "--from-literal=a=b",
    ]);
    for (kind, name) in [("Volume", "vol-x"), ("Image", "img-x")] {
        let y = format!(
            "apiVersion: containers.rancherdesktop.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
        );
        let f = env.home.path().join(format!("{name}.yaml"));
        std::fs::write(&f, y).unwrap();
        env.kubectl_ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    let events = watch_for(&client, &path_c, Duration::from_secs(120)).await;
    let app_events = app_watch.await.unwrap();
    let cm_events = cm_watch.await.unwrap();
    assert_eq!(cm_events.len(), 1, "the watch sees writes: {cm_events:?}");
    let after = env.docker_total();
    assert!(events.is_empty(), "container writes while idle: {events:?}");
    assert!(
        app_events.is_empty(),
        "App writes while idle: {app_events:?}"
    );
    assert_eq!(after - before, 0, "Docker calls while idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_s10_r_eng_s6_r_eng_t8_delete_forwarding() {
    let mut env = Env::start().await;
    let doomed = env.container("doomed", true, &[], &["sleep", "1000"]);
    let held = env.container("held", true, &[], &["sleep", "1000"]);
    env.start_controller();
    env.wait_synced("Connected", T).await;
    env.wait_mirrors("2 mirrors", T, |m| m.len() == 2).await;

    // kubectl delete removes the running container in Docker, once.
    let before = env.docker_calls();
    let started = Instant::now();
    env.kubectl_ok(&[
        "delete",
        "-n",
        &env.ns,
        &format!("container/{doomed}"),
        "--timeout=60s",
    ]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        !rdd_testkit::docker_try(&["inspect", &doomed]).0,
        "removed in Docker"
    );
    assert!(!env.mirrors().await.contains_key(&doomed));
    assert_eq!(delta(&before, &env.docker_calls(), "container_remove"), 1);

    // A mirror whose container is already gone (a bare object with the finalizer) is released.
    let bare = "e".repeat(64);
    let mut obj = Container::new(&bare, Default::default());
    obj.metadata.finalizers = Some(vec!["engine.rancherdesktop.io/mirror".into()]);
    env.containers()
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    env.containers()
        .delete(&bare, &DeleteParams::default())
        .await
        .unwrap();
    env.wait_mirrors("bare mirror released", T, |m| !m.contains_key(&bare))
        .await;

    // R-ENG-S6: a terminating mirror (held by a foreign finalizer, ours stripped) never gets our
    // finalizer back, while Docker events still update its status.
    let api = env.containers();
    api.patch(
        &held,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    api.delete(&held, &DeleteParams::default()).await.unwrap();
    docker(&["pause", &held]);
    env.wait_mirrors("status follows on a terminating mirror", T, |m| {
        status_of(&m[&held]) == Some(ContainerStatusValue::Paused)
    })
    .await;
    docker(&["unpause", &held]);
    let m = env
        .wait_mirrors("unpaused", T, |m| {
            status_of(&m[&held]) == Some(ContainerStatusValue::Running)
        })
        .await;
    assert_eq!(m[&held].finalizers(), ["example.com/hold".to_string()]);
    assert!(m[&held].metadata.deletion_timestamp.is_some());
    // Releasing the foreign finalizer lets it go; the container stays (nobody asked Docker).
    api.patch(
        &held,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    env.wait_mirrors("held mirror gone", T, |m| !m.contains_key(&held))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_t2_r_eng_s9_reconnect_after_proxy_kill_and_gateway_restart_repairs_in_place() {
    let mut env = Env::start().await;
    let mut running = Vec::new();
    let mut stopped = Vec::new();
    for i in 0..10 {
        running.push(env.container(&format!("r{i}"), true, &[], &["sleep", "1000"]));
        stopped.push(env.container(&format!("s{i}"), false, &[], &["sleep", "1000"]));
    }
    let ports: Vec<String> = (0..6).map(|i| format!("127.0.0.1::{}", 9000 + i)).collect();
    let mut extra = Vec::new();
    for p in &ports {
        extra.extend(["-p", p.as_str()]);
    }
    let pid = env.container("ports", true, &extra, &["sleep", "1000"]);
    env.start_controller();
    env.wait_synced("Connected", T).await;
    let m0 = env
        .wait_mirrors("21 mirrors", T, |m| {
            m.len() == 21 && equal_to_docker(&env, m)
        })
        .await;

    env.proxy.kill().await;
    let c = env.wait_synced("ConnectFailed", T).await;
    assert!(
        c["message"].as_str().unwrap().contains("docker.sock"),
        "{c}"
    );
    // 20 changes while disconnected.
    for id in &stopped[..5] {
        docker(&["start", id]);
    }
    for id in &running[..5] {
        docker(&["stop", "-t", "1", id]);
    }
    for id in running[5..8].iter().chain(&stopped[5..7]) {
        docker(&["rm", "-f", id]);
    }
    let mut fresh = Vec::new();
    for i in 0..5 {
        fresh.push(env.container(&format!("n{i}"), i % 2 == 0, &[], &["sleep", "1000"]));
    }
    env.proxy.restart().await;
    env.wait_synced("Connected", T).await;
    let m = env
        .wait_mirrors("mirrors equal docker ps -a", T, |m| {
            equal_to_docker(&env, m)
        })
        .await;
    assert_eq!(m.len(), 21);
    for id in fresh.iter() {
        assert!(m.contains_key(id));
    }
    // Survivors keep their identity; the unchanged port container was not rewritten.
    for (id, old) in &m0 {
        if let Some(now) = m.get(id) {
            assert_eq!(now.metadata.uid, old.metadata.uid, "{id} kept its UID");
        }
    }
    assert_eq!(
        m[&pid].metadata.resource_version, m0[&pid].metadata.resource_version,
        "R-ENG-I4: resync of an unchanged 6-port container writes nothing"
    );
    assert_eq!(
        serde_json::to_string(&m[&pid].status.as_ref().unwrap().ports).unwrap(),
        serde_json::to_string(&m0[&pid].status.as_ref().unwrap().ports).unwrap()
    );

    // R-ENG-S9: the gateway process dies (its stream ends): ConnectFailed, mirrors kept; after
    // its restart the session resubscribes and repairs what changed meanwhile.
    env.kill_gateway();
    let c = env.wait_synced("ConnectFailed", T).await;
    assert!(
        c["message"].as_str().unwrap().contains("docker-gateway"),
        "{c}"
    );
    assert_eq!(
        env.mirrors().await.len(),
        21,
        "mirrors kept while disconnected"
    );
    docker(&["rm", "-f", &fresh[0]]);
    docker(&["start", &stopped[7]]);
    let late = env.container("late", false, &[], &["true"]);
    env.start_gateway();
    env.wait_synced("Connected", T).await;
    let m2 = env
        .wait_mirrors(
            "mirrors equal docker ps -a after the gateway restart",
            T,
            |m| equal_to_docker(&env, m),
        )
        .await;
    assert!(m2.contains_key(&late) && !m2.contains_key(&fresh[0]));
    for (id, old) in &m {
        if let Some(now) = m2.get(id) {
            assert_eq!(now.metadata.uid, old.metadata.uid, "{id} kept its UID");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_d7_r_eng_d2_r_eng_t8_g1_sweep_on_stop_engine_switch_and_app_delete() {
    let mut env = Env::start().await;
    for i in 0..5 {
        env.container(&format!("w{i}"), i % 2 == 0, &[], &["sleep", "1000"]);
    }
    env.start_controller();
    env.wait_synced("Connected", T).await;
    let m = env.wait_mirrors("5 mirrors", T, |m| m.len() == 5).await;
    let ns = env.ns.clone();

    // R-ENG-D2: deleting moby returns at once and it comes back with a new UID.
    let cns = |env: &Env| {
        let (ok, out, _) = env.kubectl(&[
            "get",
            "cns",
            "moby",
            "-n",
            &env.ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        ok.then_some(out)
    };
    let uid0 = cns(&env).expect("moby exists");
    let started = Instant::now();
    env.kubectl_ok(&["delete", "cns", "moby", "-n", &ns, "--timeout=10s"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = Instant::now() + T;
    loop {
        if let Some(uid) = cns(&env)
            && uid != uid0
        {
            break;
        }
        assert!(Instant::now() < deadline, "moby was not recreated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // R-ENG-T8: a foreign finalizer blocks the sweep visibly.
    let blocked = m.keys().next().unwrap().clone();
    env.containers()
        .patch(
            &blocked,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["engine.rancherdesktop.io/mirror", "example.com/hold"]}})),
        )
        .await
        .unwrap();
    env.set_running(false).await;
    let c = env.wait_synced("SweepBlocked", T).await;
    assert!(c["message"].as_str().unwrap().contains(&blocked), "{c}");
    env.containers()
        .patch(
            &blocked,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let c = env.wait_synced("Stopped", T).await;
    assert_eq!(c["status"], "False");
    assert!(env.mirrors().await.is_empty(), "swept before Stopped");
    assert!(cns(&env).is_none(), "moby swept");
    assert_eq!(
        env.docker_state().len(),
        5,
        "the sweep makes no Docker call"
    );

    // Back on: mirrors return.
    env.set_running(true).await;
    env.wait_synced("Connected", T).await;
    env.wait_mirrors("5 mirrors again", T, |m| m.len() == 5)
        .await;

    // R-ENG-D7: containerd → NotApplicable only after the sweep.
    let apps: kube::Api<rdd_api::app::App> = kube::Api::all(env.client.clone());
    apps.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"containerEngine": {"name": "containerd"}}})),
    )
    .await
    .unwrap();
    let c = env.wait_synced("NotApplicable", T).await;
    assert_eq!(c["status"], "True");
    assert!(env.mirrors().await.is_empty());
    let generation = apps.get("app").await.unwrap().metadata.generation.unwrap();
    assert_eq!(c["observedGeneration"], generation, "R-ENG-I3");
    apps.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"containerEngine": {"name": "moby"}}})),
    )
    .await
    .unwrap();
    env.wait_synced("Connected", T).await;
    env.wait_mirrors("5 mirrors again", T, |m| m.len() == 5)
        .await;

    // G-1: deleting the App stops mirroring and sweeps NS so it can terminate.
    apps.delete("app", &DeleteParams::default()).await.unwrap();
    env.wait_mirrors("swept after App delete", T, |m| m.is_empty())
        .await;
    env.kubectl_ok(&["delete", "namespace", &ns, "--timeout=30s"]);
}
