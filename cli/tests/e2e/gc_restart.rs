//! Garbage collection across a crash (CP-64, AT-31): owner deletion in all three propagation
//! modes removes or orphans dependents as Kubernetes does, also when the server is killed
//! with SIGKILL between the owner's deletion and the dependents' removal and started again.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::{Value, json};

use crate::harness::{KUBECTL_OLD, Server};

const HOLD: &str = "test.rdd.io/hold";

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cm(name: &str, owner: Option<(&str, &str, bool)>, hold: bool) -> ConfigMap {
    let mut v = json!({"metadata": {"name": name}, "data": {"a": "b"}});
    if let Some((oname, uid, block)) = owner {
        v["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
            "name": oname, "uid": uid, "blockOwnerDeletion": block}]);
    }
    if hold {
        v["metadata"]["finalizers"] = json!([HOLD]);
    }
    serde_json::from_value(v).unwrap()
}

/// An owner and its dependents: `<p>-free` (no finalizer) and `<p>-held` (held by a
/// finalizer), both blocking the owner's deletion.
async fn family(api: &Api<ConfigMap>, p: &str) -> String {
    let owner = api
        .create(
            &PostParams::default(),
            &cm(&format!("{p}-owner"), None, false),
        )
        .await
        .unwrap();
    let uid = owner.metadata.uid.unwrap();
    let on = format!("{p}-owner");
    for (dep, hold) in [("free", false), ("held", true)] {
        api.create(
            &PostParams::default(),
            &cm(&format!("{p}-{dep}"), Some((&on, &uid, true)), hold),
        )
        .await
        .unwrap();
    }
    uid
}

fn json_of(c: &ConfigMap) -> Value {
    serde_json::to_value(c).unwrap()
}

fn finalizers(c: &ConfigMap) -> Vec<String> {
    c.metadata.finalizers.clone().unwrap_or_default()
}

fn terminating(c: &Option<ConfigMap>) -> bool {
    c.as_ref()
        .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
}

async fn release(api: &Api<ConfigMap>, name: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": HOLD},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]))
            .unwrap(),
        ),
    )
    .await
    .unwrap();
}

/// Foreground through kubectl: the owner waits (foregroundDeletion) while a blocking dependent
/// is held by its finalizer; SIGKILL and restart in that state; the owner still waits, and goes
/// once the dependent is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_foreground_owner_waits_for_a_held_dependent_across_a_kill_9() {
    let mut s = Server::start();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    family(&api, "fg").await;
    s.ok(
        &PathBuf::from(KUBECTL_OLD),
        &[
            "delete",
            "configmap",
            "fg-owner",
            "--cascade=foreground",
            "--wait=false",
        ],
    );
    eventually(
        "the free dependent deleted, the held one terminating",
        || async {
            api.get_opt("fg-free").await.unwrap().is_none()
                && terminating(&api.get_opt("fg-held").await.unwrap())
        },
    )
    .await;
    let owner = api.get("fg-owner").await.unwrap();
    assert!(finalizers(&owner).contains(&"foregroundDeletion".to_string()));

    s.restart();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    // The start-up pass must not release the owner while its blocking dependent exists.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let owner = api.get("fg-owner").await.unwrap();
    assert!(
        owner.metadata.deletion_timestamp.is_some() && finalizers(&owner) == ["foregroundDeletion"],
        "{}",
        json_of(&owner)
    );
    assert!(terminating(&api.get_opt("fg-held").await.unwrap()));
    release(&api, "fg-held").await;
    eventually("dependent and owner gone", || async {
        api.get_opt("fg-held").await.unwrap().is_none()
            && api.get_opt("fg-owner").await.unwrap().is_none()
    })
    .await;
}

/// All three modes, with the server killed after the owners' deletions were acknowledged and
/// before the collector acted on them (held back by the `--gc-delay-ms` test switch): after a
/// restart with the normal collector everything converges to what Kubernetes ends with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_all_propagation_modes_converge_after_a_kill_9_right_after_the_owner_delete() {
    let mut s = Server::start_with(&["--gc-delay-ms=600000"]);
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    for p in ["bg", "fg", "or"] {
        family(&api, p).await;
    }
    for (p, policy) in [
        ("bg", PropagationPolicy::Background),
        ("fg", PropagationPolicy::Foreground),
        ("or", PropagationPolicy::Orphan),
    ] {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        api.delete(&format!("{p}-owner"), &dp).await.unwrap();
    }
    // Midway: owners deleted or waiting, no dependent touched yet.
    assert!(api.get_opt("bg-owner").await.unwrap().is_none());
    for p in ["bg", "fg", "or"] {
        for dep in ["free", "held"] {
            let d = api.get(&format!("{p}-{dep}")).await.unwrap();
            assert!(
                d.metadata.deletion_timestamp.is_none() && d.metadata.owner_references.is_some(),
                "{}",
                json_of(&d)
            );
        }
    }
    assert_eq!(
        finalizers(&api.get("fg-owner").await.unwrap()),
        ["foregroundDeletion"]
    );
    assert_eq!(finalizers(&api.get("or-owner").await.unwrap()), ["orphan"]);
    s.args.clear();
    s.restart();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);

    // Background: the owner is gone; the free dependent follows, the held one terminates.
    // Foreground: the owner waits for the held dependent. Orphan: both dependents stay,
    // without their owner reference, and the owner goes.
    eventually("collected after the restart", || async {
        let get = |n: &'static str| {
            let api = api.clone();
            async move { api.get_opt(n).await.unwrap() }
        };
        get("bg-owner").await.is_none()
            && get("bg-free").await.is_none()
            && terminating(&get("bg-held").await)
            && terminating(&get("fg-owner").await)
            && get("fg-free").await.is_none()
            && terminating(&get("fg-held").await)
            && get("or-owner").await.is_none()
            && get("or-free")
                .await
                .is_some_and(|c| c.metadata.owner_references.is_none())
            && get("or-held").await.is_some_and(|c| {
                c.metadata.owner_references.is_none() && c.metadata.deletion_timestamp.is_none()
            })
    })
    .await;
    assert_eq!(
        finalizers(&api.get("fg-owner").await.unwrap()),
        ["foregroundDeletion"]
    );
    release(&api, "bg-held").await;
    release(&api, "fg-held").await;
    eventually("held dependents and the foreground owner gone", || async {
        api.get_opt("bg-held").await.unwrap().is_none()
            && api.get_opt("fg-held").await.unwrap().is_none()
            && api.get_opt("fg-owner").await.unwrap().is_none()
    })
    .await;
    // Orphans are ordinary objects now.
    assert!(api.get_opt("or-held").await.unwrap().is_some());
}

/// Foreground as upstream's collector does it: only dependents with `blockOwnerDeletion: true`
/// hold the owner, and a dependent that owns others is itself deleted in the foreground, so the
/// owner waits for the whole blocking chain; a kill -9 midway changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_foreground_waits_only_for_blocking_dependents_and_cascades_through_a_chain() {
    let mut s = Server::start();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    let top = api
        .create(&PostParams::default(), &cm("top", None, false))
        .await
        .unwrap();
    let top_uid = top.metadata.uid.unwrap();
    // A non-blocking dependent held by a finalizer does not hold `top`.
    api.create(
        &PostParams::default(),
        &cm("loose", Some(("top", &top_uid, false)), true),
    )
    .await
    .unwrap();
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    api.delete("top", &dp).await.unwrap();
    eventually(
        "owner gone while the loose dependent terminates",
        || async {
            api.get_opt("top").await.unwrap().is_none()
                && terminating(&api.get_opt("loose").await.unwrap())
        },
    )
    .await;
    release(&api, "loose").await;

    // root ← child ← grandchild (held), all blocking.
    let root = api
        .create(&PostParams::default(), &cm("root", None, false))
        .await
        .unwrap();
    let root_uid = root.metadata.uid.unwrap();
    let child = api
        .create(
            &PostParams::default(),
            &cm("child", Some(("root", &root_uid, true)), false),
        )
        .await
        .unwrap();
    let child_uid = child.metadata.uid.unwrap();
    api.create(
        &PostParams::default(),
        &cm("grandchild", Some(("child", &child_uid, true)), true),
    )
    .await
    .unwrap();
    api.delete("root", &dp).await.unwrap();
    eventually("the chain deleting in the foreground", || async {
        let child = api.get_opt("child").await.unwrap();
        terminating(&child)
            && child.is_some_and(|c| finalizers(&c) == ["foregroundDeletion"])
            && terminating(&api.get_opt("grandchild").await.unwrap())
            && terminating(&api.get_opt("root").await.unwrap())
    })
    .await;
    s.restart();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        terminating(&api.get_opt("root").await.unwrap()),
        "root waits"
    );
    assert!(
        terminating(&api.get_opt("child").await.unwrap()),
        "child waits"
    );
    release(&api, "grandchild").await;
    eventually("the whole chain gone", || async {
        api.get_opt("grandchild").await.unwrap().is_none()
            && api.get_opt("child").await.unwrap().is_none()
            && api.get_opt("root").await.unwrap().is_none()
    })
    .await;
}
