//! The three mirror controllers together (container-, image-, volume-controller) against real
//! Docker, the docker-gateway and `rdd svc serve`: what one kind's process does must not cost the
//! others, each writes only its own App condition, and Namespace NS and ContainerNamespace `moby`
//! are repaired while connected. Build the binaries first: `cargo build -p rdd -p
//! docker-gateway -p container-controller -p image-controller -p volume-controller`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use rdd_api::app::App;
use rdd_api::containers::{ContainerNamespace, ContainerStatusValue, Image, Volume};
use rdd_testkit::{docker, docker_try};
use support::Env;

const T: Duration = Duration::from_secs(60);
const KINDS: [&str; 3] = [
    "container-controller",
    "image-controller",
    "volume-controller",
];

async fn start_all(env: &mut Env) {
    for k in KINDS {
        env.start_kind(k);
    }
    for c in ["ContainersSynced", "ImagesSynced", "VolumesSynced"] {
        env.wait_cond(c, "Connected", T).await;
    }
}

fn uid_of<K: kube::Resource>(m: &BTreeMap<String, K>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(n, o)| (n.clone(), o.meta().uid.clone().unwrap_or_default()))
        .collect()
}

fn requests(env: &Env) -> BTreeMap<&'static str, u64> {
    KINDS.iter().map(|k| (*k, env.api_requests(k))).collect()
}

/// Wait until no controller has made an API request for a second (the trailing writes of the
/// last event are done), and return the counts.
async fn settled(env: &Env) -> BTreeMap<&'static str, u64> {
    let deadline = Instant::now() + T;
    let mut last = requests(env);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = requests(env);
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "requests never settled");
        last = now;
    }
}

fn request_lines(env: &Env, k: &str) -> String {
    support::http_get(env.admin(k), "/metrics")
        .lines()
        .filter(|l| l.starts_with("rest_client_requests_total{"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Each controller writes its own `<Kind>sSynced` condition under its own field manager, and
/// only that one (one writer per condition; `ContainerEngineReady` is the app-controller's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_each_controller_writes_only_its_own_synced_condition() {
    let mut env = Env::start().await;
    env.start_kind("container-controller");
    env.start_kind("image-controller");
    env.wait_cond("ContainersSynced", "Connected", T).await;
    env.wait_cond("ImagesSynced", "Connected", T).await;
    let v = env.app_condition("VolumesSynced").await;
    assert!(v.is_none(), "{v:?}");
    env.start_kind("volume-controller");
    env.wait_cond("VolumesSynced", "Connected", T).await;
    let apps: Api<App> = Api::all(env.client.clone());
    let app = apps.get("app").await.unwrap();
    let generation = app.metadata.generation.unwrap();
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in app.metadata.managed_fields.iter().flatten() {
        let fields = serde_json::to_value(&f.fields_v1).unwrap();
        let conds = &fields["f:status"]["f:conditions"];
        for key in conds.as_object().into_iter().flatten().map(|(k, _)| k) {
            owners
                .entry(f.manager.clone().unwrap_or_default())
                .or_default()
                .push(key.clone());
        }
    }
    for (manager, type_) in [
        ("container-controller", "ContainersSynced"),
        ("image-controller", "ImagesSynced"),
        ("volume-controller", "VolumesSynced"),
    ] {
        assert_eq!(
            owners.get(manager),
            Some(&vec![format!("k:{{\"type\":\"{type_}\"}}")]),
            "{owners:?}"
        );
        let c = env.app_condition(type_).await.unwrap();
        assert_eq!(c["observedGeneration"], generation);
        assert_eq!(c["status"], "True");
    }
    assert!(
        env.app_condition("ContainerEngineReady").await.is_none(),
        "no mirror controller writes ContainerEngineReady"
    );
}

/// R-ENG-D1 across processes: a Container, Image or Volume event costs the other two
/// controllers no API request (each subscribes only to its own event type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_d1_an_event_of_one_kind_costs_the_other_controllers_nothing() {
    let mut env = Env::start().await;
    let c = env.container("busy", true, &[], &["sleep", "1000"]);
    let img = env.scope.image(&["x"]);
    start_all(&mut env).await;
    env.wait_list::<Image>("image mirror", T, |m| m.len() == 1)
        .await;
    // Container events: pause/unpause × 5.
    let r0 = settled(&env).await;
    let mut lines = BTreeMap::new();
    for k in KINDS {
        lines.insert(k, request_lines(&env, k));
    }
    for _ in 0..5 {
        docker(&["pause", &c]);
        docker(&["unpause", &c]);
    }
    env.wait_mirrors("running again", T, |m| {
        m[&c].status.as_ref().map(|s| s.status) == Some(ContainerStatusValue::Running)
    })
    .await;
    let r1 = settled(&env).await;
    assert!(r1["container-controller"] > r0["container-controller"]);
    assert_eq!(
        r1["image-controller"],
        r0["image-controller"],
        "container events: {} → {}",
        lines["image-controller"],
        request_lines(&env, "image-controller")
    );
    assert_eq!(
        r1["volume-controller"],
        r0["volume-controller"],
        "container events: {} → {}",
        lines["volume-controller"],
        request_lines(&env, "volume-controller")
    );

    for k in KINDS {
        lines.insert(k, request_lines(&env, k));
    }
    // Image events: tag/untag × 5.
    for i in 0..5 {
        let r = env.scope.image_ref(&format!("t{i}"));
        docker(&["tag", &img, &r]);
        docker(&["rmi", &r]);
    }
    let last = env.scope.image_ref("last");
    docker(&["tag", &img, &last]);
    env.wait_list::<Image>("last tag mirrored", T, |m| m.len() == 2)
        .await;
    let r2 = settled(&env).await;
    assert!(r2["image-controller"] > r1["image-controller"]);
    assert_eq!(
        r2["container-controller"],
        r1["container-controller"],
        "image events: {} → {}",
        lines["container-controller"],
        request_lines(&env, "container-controller")
    );
    assert_eq!(
        r2["volume-controller"],
        r1["volume-controller"],
        "image events: {} → {}",
        lines["volume-controller"],
        request_lines(&env, "volume-controller")
    );

    for k in KINDS {
        lines.insert(k, request_lines(&env, k));
    }
    // Volume events: create/remove × 5.
    for i in 0..5 {
        let v = env.scope.volume(&format!("v{i}"));
        docker(&["volume", "rm", &v]);
    }
    let keep = env.scope.volume("keep");
    env.wait_list::<Volume>("volume mirrored", T, |m| m.len() == 1)
        .await;
    let r3 = settled(&env).await;
    assert!(r3["volume-controller"] > r2["volume-controller"]);
    assert_eq!(
        r3["container-controller"],
        r2["container-controller"],
        "volume events: {} → {}",
        lines["container-controller"],
        request_lines(&env, "container-controller")
    );
    assert_eq!(
        r3["image-controller"],
        r2["image-controller"],
        "volume events: {} → {}",
        lines["image-controller"],
        request_lines(&env, "image-controller")
    );
    assert!(docker_try(&["volume", "inspect", &keep]).0);
}

/// R-ENG-D2, R-ENG-T10, R-ENG-D6: while connected, a deleted `moby` returns at once and comes
/// back; a deleted Namespace NS terminates (its mirrors are released without Docker calls), comes
/// back, and every mirror is restored; Docker keeps every object. `moby` is written on repairs
/// only, never per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_eng_d2_r_eng_t10_r_eng_d6_moby_and_namespace_come_back_with_their_mirrors() {
    let mut env = Env::start().await;
    let c = env.container("keep", true, &[], &["sleep", "1000"]);
    let img = env.scope.image(&["one", "two"]);
    let vol = env.scope.volume("data");
    start_all(&mut env).await;
    let ns = env.ns.clone();
    let cns: Api<ContainerNamespace> = Api::namespaced(env.client.clone(), &ns);
    env.wait_mirrors("container", T, |m| m.len() == 1).await;
    env.wait_list::<Image>("images", T, |m| m.len() == 2).await;
    env.wait_list::<Volume>("volume", T, |m| m.len() == 1).await;
    let moby = cns.get("moby").await.unwrap();
    assert!(moby.finalizers().is_empty(), "moby carries no finalizer");

    // R-ENG-D6: 20 container events do not touch moby.
    for _ in 0..10 {
        docker(&["pause", &c]);
        docker(&["unpause", &c]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cns.get("moby").await.unwrap().resource_version(),
        moby.resource_version()
    );

    // moby: the user's delete returns at once, a new one follows.
    let started = Instant::now();
    env.kubectl_ok(&["delete", "cns", "moby", "-n", &ns, "--timeout=10s"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = Instant::now() + T;
    loop {
        if let Some(m) = cns.get_opt("moby").await.unwrap()
            && m.uid() != moby.uid()
        {
            break;
        }
        assert!(Instant::now() < deadline, "moby was not recreated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // NS: deleted while connected.
    let before = env.docker_calls();
    let containers0 = uid_of(&env.mirrors().await);
    let images0 = uid_of(&env.list::<Image>().await);
    let ns_uid = env.kubectl_ok(&["get", "ns", &ns, "-o", "jsonpath={.metadata.uid}"]);
    let started = Instant::now();
    env.kubectl_ok(&["delete", "namespace", &ns, "--timeout=60s"]);
    assert!(started.elapsed() < Duration::from_secs(60));
    let deadline = Instant::now() + T;
    loop {
        let (ok, uid, _) = env.kubectl(&["get", "ns", &ns, "-o", "jsonpath={.metadata.uid}"]);
        if ok && uid != ns_uid {
            break;
        }
        assert!(Instant::now() < deadline, "namespace was not recreated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every mirror comes back (new objects in the new namespace).
    let m = env
        .wait_mirrors("container restored", T, |m| m.contains_key(&c))
        .await;
    assert_ne!(uid_of(&m), containers0);
    let im = env
        .wait_list::<Image>("images restored", T, |m| m.len() == 2)
        .await;
    assert_ne!(uid_of(&im), images0);
    env.wait_list::<Volume>("volume restored", T, |m| m.len() == 1)
        .await;
    let deadline = Instant::now() + T;
    while cns.get_opt("moby").await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "moby not restored in the new namespace"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Deleting NS deleted nothing in Docker.
    let after = env.docker_calls();
    for op in ["container_remove", "image_remove", "volume_remove"] {
        assert_eq!(
            after.get(op).copied().unwrap_or(0),
            before.get(op).copied().unwrap_or(0),
            "{op}"
        );
    }
    assert!(docker_try(&["inspect", &c]).0);
    assert!(docker_try(&["image", "inspect", &img]).0);
    assert!(docker_try(&["volume", "inspect", &vol]).0);
    for t in ["ContainersSynced", "ImagesSynced", "VolumesSynced"] {
        env.wait_cond(t, "Connected", T).await;
    }
}
