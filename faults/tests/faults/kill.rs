//! `kill -9` of the API server during writes, and of a controller during an action and during a
//! deletion.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use rand::Rng;
use rdd_faults::{Write, acknowledged_vs_stored, describe};

use crate::support::{Env, SERIAL, containers_rs};

const T: Duration = Duration::from_secs(60);
const SYNCED: [&str; 3] = ["ContainersSynced", "ImagesSynced", "VolumesSynced"];

fn data_of(cm: &ConfigMap) -> String {
    serde_json::to_string(&cm.data).unwrap_or_default()
}

/// 8 writers × 125 writes (a create of a fresh object, then updates of the writer's own object,
/// alternating) until the server dies under them.
async fn write_until_error(api: Api<ConfigMap>, acked: Arc<Mutex<Vec<Write>>>, w: usize) {
    let mine = format!("w{w}");
    let mut current: Option<ConfigMap> = None;
    for i in 0..125 {
        let r = if i % 2 == 0 || current.is_none() {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(if current.is_none() {
                        mine.clone()
                    } else {
                        format!("w{w}-{i}")
                    }),
                    ..Default::default()
                },
                data: Some([("i".to_string(), i.to_string())].into()),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await
        } else {
            let mut cm = current.clone().unwrap_or_default();
            cm.data = Some([("i".to_string(), i.to_string())].into());
            api.replace(&mine, &PostParams::default(), &cm).await
        };
        match r {
            Ok(o) => {
                let rv: u64 = o.resource_version().unwrap_or_default().parse().unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push(Write::new(o.name_any(), rv, data_of(&o)));
                if o.name_any() == mine {
                    current = Some(o);
                }
            }
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_kill_9_during_1000_writes_loses_nothing_acknowledged_and_controllers_resume() {
    let _serial = SERIAL.lock().await;
    let mut env = Env::start(&[]).await;
    env.container("before", true, &[], &["sleep", "1000"]);
    env.scope.volume("before");
    env.start_all_kinds();
    for t in SYNCED {
        env.wait_cond(t, "Connected", T).await;
    }
    env.wait_equal("before the kill", T).await;
    let pids: BTreeMap<String, u32> = ["container-controller", "volume-controller"]
        .iter()
        .map(|k| (k.to_string(), env.controller_pid(k)))
        .collect();

    env.kubectl_ok(&["create", "namespace", "writes"]);
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "writes");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| tokio::spawn(write_until_error(api.clone(), acked.clone(), w)))
        .collect();
    // The kill lands at a random point of the 1000 writes.
    let at = rand::rng().random_range(100..900);
    let t = Instant::now();
    while acked.lock().unwrap().len() < at {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} of {at} writes acknowledged in 60 s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let delay = t.elapsed().as_millis();
    let port = env.server.port;
    env.server.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "API server killed after {delay} ms, {} writes acknowledged",
        acked.len()
    );
    assert!(!acked.is_empty(), "the kill came before any write");
    // Controllers keep running without the server, and nothing restarts them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.server.restart();
    assert_eq!(env.server.port, port);

    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "writes");
    let stored: Vec<Write> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| {
            Write::new(
                o.name_any(),
                o.resource_version().unwrap_or_default().parse().unwrap(),
                data_of(o),
            )
        })
        .collect();
    let diffs = acknowledged_vs_stored(&acked, &stored);
    assert!(diffs.is_empty(), "after restart: {}", describe(&diffs));

    // The same controller processes see changes made after the restart.
    env.container("after", true, &[], &["sleep", "1000"]);
    env.scope.volume("after");
    env.wait_equal("after the restart", T).await;
    for t in SYNCED {
        env.wait_cond(t, "Connected", T).await;
    }
    for (k, pid) in pids {
        assert_eq!(env.controller_pid(&k), pid, "{k} was not restarted");
        let p = env.controllers.get_mut(&k).unwrap();
        assert!(p.alive(), "{k} exited");
    }
}

async fn annotations(env: &Env, id: &str) -> BTreeMap<String, String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &containers_rs());
    api.get(id).await.unwrap().annotations().clone()
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, k: &str) -> u64 {
    after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0)
}

/// Wait until `f` holds for the gateway's started-call counters.
async fn wait_started(env: &Env, what: &str, f: impl Fn(&BTreeMap<String, u64>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f(&env.docker_started()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_i1_controller_kill_9_mid_action_and_mid_deletion_converges_no_docker_action_twice() {
    const CC: &str = "container-controller";
    let _serial = SERIAL.lock().await;
    let mut env = Env::start(&[]).await;
    // PID 1 ignores SIGTERM: `docker stop` waits the 4 s stop timeout, so the kill lands while
    // the gateway's stop call is in flight.
    let slow = env.container("slow", true, &["--stop-timeout", "4"], &["sleep", "1000"]);
    let doomed: Vec<String> = (0..10)
        .map(|i| env.container(&format!("doomed{i}"), false, &[], &["true"]))
        .collect();
    env.start_kind(CC);
    env.wait_cond("ContainersSynced", "Connected", T).await;
    env.wait_equal("before the kills", T).await;

    // Mid-action.
    let before = env.docker_started();
    env.kubectl_ok(&[
        "annotate",
        "-n",
        &env.ns,
        &format!("container/{slow}"),
        "containers.rancherdesktop.io/action=stop",
    ]);
    wait_started(&env, "the stop call", |m| {
        delta(&before, m, "container_stop") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.kill9_kind(CC);
    env.start_kind(CC);
    let deadline = Instant::now() + T;
    loop {
        let a = annotations(&env, &slow).await;
        if !a.contains_key("containers.rancherdesktop.io/action")
            && !a.contains_key("containers.rancherdesktop.io/action-claimed")
        {
            break;
        }
        assert!(Instant::now() < deadline, "request never consumed: {a:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Docker finishes (or abandons) the stop on its own; the mirror follows either way.
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.wait_equal("after the action", T).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &containers_rs());
    let last = api.get(&slow).await.unwrap().data["status"]["lastAction"].clone();
    let docker_state = rdd_testkit::docker(&["inspect", "-f", "{{.State.Status}}", &slow]);
    eprintln!("lastAction after the kill: {last}; Docker: {docker_state}");
    assert_eq!(last["action"], "stop", "{last}");
    // Either the stop is recorded as done (the container stopped), or as interrupted; never
    // as done while Docker says otherwise.
    if last["state"] == "Succeeded" {
        assert_eq!(docker_state, "exited");
    } else {
        assert!(
            last["error"].as_str().unwrap_or("").contains("interrupted"),
            "{last}"
        );
    }
    let after = env.docker_started();
    assert_eq!(
        delta(&before, &after, "container_stop"),
        1,
        "the stop ran once: {before:?} → {after:?}"
    );

    // Mid-deletion: ten deletes, the controller killed as the first Docker remove starts.
    let calls_before = env.docker_calls();
    let before = env.docker_started();
    let mut args = vec!["delete", "--wait=false", "-n", &env.ns];
    let names: Vec<String> = doomed.iter().map(|id| format!("container/{id}")).collect();
    args.extend(names.iter().map(String::as_str));
    env.kubectl_ok(&args);
    wait_started(&env, "the first remove", |m| {
        delta(&before, m, "container_remove") >= 1
    })
    .await;
    env.kill9_kind(CC);
    // Counted after the kill, once requests the dead process had already sent have reached the
    // gateway: a snapshot taken before the kill missed removes started between it and the kill,
    // which then looked like repeats.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_kill = env.docker_started();
    let answered_at_kill = env.docker_calls();
    env.start_kind(CC);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.server.exited(), None, "the API server exited");
    let deadline = Instant::now() + T;
    while let Some(id) = doomed
        .iter()
        .find(|id| rdd_testkit::docker_try(&["inspect", id]).0)
    {
        assert!(Instant::now() < deadline, "{id} still in Docker");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No mirror left for them either (a mirror still deleting would still be listed).
    env.wait_equal("after the deletions", T).await;
    let calls = env.docker_calls();
    let started = delta(&before, &env.docker_started(), "container_remove");
    let ok = delta(&calls_before, &calls, "container_remove/Ok");
    let not_found = delta(&calls_before, &calls, "container_remove/NotFound");
    eprintln!(
        "removes: {started} started, {ok} Ok, {not_found} NotFound; {calls_before:?} → {calls:?}"
    );
    // Calls in flight at the kill had no answer (their caller died); Docker may or may not have
    // run them, so the restarted controller may repeat exactly those. Every other repeated
    // remove must have found the container gone (NotFound), never removed a second thing.
    let in_flight = delta(&before, &at_kill, "container_remove")
        - delta(&calls_before, &answered_at_kill, "container_remove/Ok")
        - delta(
            &calls_before,
            &answered_at_kill,
            "container_remove/NotFound",
        );
    eprintln!("{in_flight} removes in flight at the kill");
    assert!(ok <= 10, "{ok} successful removes for 10 containers");
    assert!(started >= 10, "{started} removes started for 10 containers");
    assert!(
        started <= 10 + not_found + in_flight,
        "removes repeated: {started} started, {ok} Ok, {not_found} NotFound, {in_flight} in flight at the kill"
    );
    assert_eq!(delta(&before, &env.docker_started(), "container_stop"), 0);
}
