//! The volume-controller against real Docker, the docker-gateway and `rdd svc serve`, all as
//! real processes (see `support`). Build the other binaries first: `cargo build -p rdd -p
//! docker-gateway`. Test names carry the invariant IDs they check.

#[path = "../../mirror/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use rdd_api::containers::Volume;
use rdd_testkit::{docker, docker_try};
use serde_json::json;
use support::Env;
use volume_controller::mirror::name;

const T: Duration = Duration::from_secs(60);
const CTRL: &str = "volume-controller";
const FINALIZER: &str = "engine.rancherdesktop.io/mirror";

fn volumes(env: &Env) -> Api<Volume> {
    Api::namespaced(env.client.clone(), &env.ns)
}

fn exists(volume: &str) -> bool {
    docker_try(&["volume", "inspect", volume]).0
}

/// Create, label, delete from Docker and from the API; only the selected volumes are mirrored;
/// a mirror a user created first, with a conflicting field owner, is taken over on the next
/// event (R-ENG-T4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_t4_volumes_created_labelled_and_deleted_from_docker_and_from_the_api() {
    let mut env = Env::start().await;
    let label = env.scope.label();
    let pre: Vec<String> = (0..3).map(|i| env.scope.volume(&format!("v{i}"))).collect();
    // Docker names may hold uppercase and `_`; the mirror name is a hash.
    let odd = env.scope.name("Odd_Name");
    docker(&[
        "volume",
        "create",
        "--label",
        &label,
        "--label",
        "colour=blue",
        &odd,
    ]);
    // Not selected: no label of the scope.
    let foreign = env.scope.name("unlabelled");
    docker(&["volume", "create", &foreign]);
    env.start_kind(CTRL);
    env.wait_cond("VolumesSynced", "Connected", T).await;
    let m = env
        .wait_list::<Volume>("four mirrors", T, |m| m.len() == 4)
        .await;
    assert!(!m.contains_key(&name(&foreign)), "outside the selector");
    let s = m[&name(&odd)].status.clone().expect("status");
    assert_eq!(s.name, odd);
    assert_eq!(s.namespace, "moby");
    assert_eq!(s.driver, "local");
    assert_eq!(s.scope, "local");
    assert!(s.mountpoint.ends_with("/_data"), "{}", s.mountpoint);
    assert_eq!(s.labels.get("colour").map(String::as_str), Some("blue"));
    assert!(!s.created_at.is_empty());
    assert!(m[&name(&odd)].finalizers().contains(&FINALIZER.to_string()));

    // Docker-side create and destroy follow by event.
    let late = env.scope.volume("late");
    env.wait_list::<Volume>("late mirrored", T, |m| m.contains_key(&name(&late)))
        .await;
    docker(&["volume", "rm", &pre[0]]);
    env.wait_list::<Volume>("destroyed in Docker", T, |m| {
        !m.contains_key(&name(&pre[0]))
    })
    .await;

    // API-side delete removes the volume in Docker, once.
    let before = env.docker_calls();
    let started = Instant::now();
    env.kubectl_ok(&[
        "delete",
        "-n",
        &env.ns,
        &format!("volume/{}", name(&pre[1])),
        "--timeout=60s",
    ]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!exists(&pre[1]), "removed in Docker");
    let calls = env.docker_calls();
    assert_eq!(
        calls.get("volume_remove").copied().unwrap_or(0)
            - before.get("volume_remove").copied().unwrap_or(0),
        1
    );

    // R-ENG-T4: a user creates the mirror first, with a status of their own under another field
    // manager; the create event of the volume makes it ours (finalizer, status, ownership).
    let taken = env.scope.name("taken");
    let n = name(&taken);
    let mut obj = Volume::new(&n, Default::default());
    obj.metadata.namespace = Some(env.ns.clone());
    volumes(&env)
        .create(&Default::default(), &obj)
        .await
        .unwrap();
    volumes(&env)
        .patch_status(
            &n,
            &PatchParams::apply("a-user"),
            &Patch::Apply(json!({
                "apiVersion": "containers.rancherdesktop.io/v1alpha1", "kind": "Volume",
                "status": {"name": taken, "namespace": "moby", "createdAt": "2020-01-01T00:00:00Z",
                    "driver": "bogus", "mountpoint": "/nowhere", "scope": "global"},
            })),
        )
        .await
        .unwrap();
    docker(&["volume", "create", "--label", &label, &taken]);
    env.wait_list::<Volume>("taken over", T, |m| {
        m.get(&n).is_some_and(|o| {
            o.finalizers().contains(&FINALIZER.to_string())
                && o.status.as_ref().is_some_and(|s| s.driver == "local")
        })
    })
    .await;
    let o = volumes(&env).get(&n).await.unwrap();
    let owners: Vec<(String, String)> = o
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|f| {
            (
                f.manager.clone().unwrap_or_default(),
                serde_json::to_string(&f.fields_v1).unwrap(),
            )
        })
        .collect();
    let owns = |manager: &str, field: &str| {
        owners
            .iter()
            .any(|(m, f)| m == manager && f.contains(field))
    };
    assert!(owns(CTRL, "f:driver"), "{owners:?}");
    assert!(!owns("a-user", "f:driver"), "{owners:?}");
    assert_eq!(o.status.unwrap().scope, "local");

    docker(&["volume", "rm", &foreign]);
}

/// A volume in use: the delete is refused by Docker and reported on the mirror (condition and
/// event); the mirror stays until the container is gone. A terminating mirror never gets our
/// finalizer back (R-ENG-S6, gap G-6), while its status still follows Docker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_s6_volume_in_use_reports_the_conflict_and_keeps_its_mirror() {
    let mut env = Env::start().await;
    let label = env.scope.label();
    let used = env.scope.volume("used");
    let held = env.scope.volume("held");
    let cname = env.scope.name("user");
    let mount = format!("{used}:/data");
    let user = docker(&[
        "create",
        "--label",
        &label,
        "--name",
        &cname,
        "-v",
        &mount,
        rdd_testkit::busybox_image(),
        "true",
    ]);
    env.start_kind(CTRL);
    env.wait_cond("VolumesSynced", "Connected", T).await;
    env.wait_list::<Volume>("mirrors", T, |m| m.len() == 2)
        .await;
    let nused = name(&used);
    let nheld = name(&held);

    volumes(&env)
        .delete(&nused, &DeleteParams::default())
        .await
        .unwrap();
    let m = env
        .wait_list::<Volume>("DeletionBlocked", T, |m| {
            m[&nused]
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "DeletionBlocked"))
        })
        .await;
    let c = m[&nused].status.as_ref().unwrap().conditions[0].clone();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Conflict"));
    assert!(c.message.contains("in use"), "{}", c.message);
    assert!(m[&nused].finalizers().contains(&FINALIZER.to_string()));
    assert!(exists(&used));
    let events = env.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        &env.ns,
        "-o",
        "jsonpath={range .items[*]}{.reason} {.regarding.name} {.type}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains(&format!("DeletionBlocked {nused} Warning")),
        "{events}"
    );

    // R-ENG-S6: ours stripped after the removal, a foreign finalizer keeps the mirror; the
    // volume created again (an event for the same mirror) updates its status, never the
    // finalizers.
    volumes(&env)
        .patch(
            &nheld,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [FINALIZER, "example.com/hold"]}})),
        )
        .await
        .unwrap();
    volumes(&env)
        .delete(&nheld, &DeleteParams::default())
        .await
        .unwrap();
    let m = env
        .wait_list::<Volume>("held removed, ours stripped", T, |m| {
            m.get(&nheld)
                .is_some_and(|o| o.finalizers() == ["example.com/hold".to_string()])
        })
        .await;
    assert!(!exists(&held), "removed in Docker");
    let created0 = m[&nheld].status.as_ref().unwrap().created_at.clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    docker(&[
        "volume",
        "create",
        "--label",
        &label,
        "--label",
        "again=yes",
        &held,
    ]);
    let m = env
        .wait_list::<Volume>("status follows on a terminating mirror", T, |m| {
            m[&nheld]
                .status
                .as_ref()
                .is_some_and(|s| s.labels.contains_key("again") && s.created_at != created0)
        })
        .await;
    assert_eq!(m[&nheld].finalizers(), ["example.com/hold".to_string()]);
    assert!(m[&nheld].metadata.deletion_timestamp.is_some());
    volumes(&env)
        .patch(
            &nheld,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();

    // The container goes: the delete succeeds on a retry (≤ 30 s), mirror and volume go.
    assert!(env.list::<Volume>().await.contains_key(&nused));
    docker(&["rm", "-f", &user]);
    env.wait_list::<Volume>("used collected", T, |m| !m.contains_key(&nused))
        .await;
    assert!(!exists(&used));
}
