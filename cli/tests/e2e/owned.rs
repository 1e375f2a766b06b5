//! controllers.md §0.3 through `rdd_kit::owned::cleanup` against the real server: objects of
//! every kind the caller may list whose ownerReferences name the owner are released from
//! owned-by finalizers and deleted; unowned objects and kinds the identity cannot list are left.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::harness::Server;
use crate::rbac::{apply, token_kubeconfig};

#[tokio::test(flavor = "multi_thread")]
async fn owned_cleanup_covers_every_listable_kind_and_skips_forbidden_ones() {
    let s = Server::start();
    apply(
        &s,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: own}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: cm-only, namespace: own}\n\
         rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, patch, delete]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: cm-only, namespace: own}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-only}\n\
         subjects:\n- {kind: User, name: cleaner, apiGroup: rbac.authorization.k8s.io}\n",
    );
    let admin = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "own");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "own");
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let uid = owner.uid().unwrap();
    // A second, live owner: a dangling owner reference would be the garbage collector's to
    // delete, racing with the checks below.
    let other = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other-owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let other_uid = other.uid().unwrap();
    let owned_by = |name: &str, uid: &str| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}]);
    for (name, refs, finalizers) in [
        (
            "cm-owned",
            owned_by("owner", &uid),
            json!(["rdd.rancherdesktop.io/owned-by-LimaVM"]),
        ),
        ("cm-free", json!([]), json!([])),
        ("cm-other", owned_by("other-owner", &other_uid), json!([])),
    ] {
        let cm = serde_json::from_value(json!({"metadata": {"name": name,
            "ownerReferences": refs, "finalizers": finalizers}}))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let secret = serde_json::from_value(
        json!({"metadata": {"name": "sec-owned", "ownerReferences": owned_by("owner", &uid)}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    // An identity that may only handle configmaps: the owned ConfigMap goes (its owned-by
    // finalizer stripped), the owned Secret is out of its reach and stays.
    let kc = token_kubeconfig(&s, "cleaner.yaml", &["--user", "cleaner"]);
    let limited = rdd_kit::client(Some(&kc)).await.unwrap();
    let n = rdd_kit::owned::cleanup(&limited, "own", &uid)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(cms.get_opt("cm-owned").await.unwrap().is_none());
    assert!(secrets.get_opt("sec-owned").await.unwrap().is_some());
    for kept in ["owner", "cm-free", "cm-other"] {
        assert!(cms.get_opt(kept).await.unwrap().is_some(), "{kept}");
    }

    // The admin sees every kind: the Secret goes too, nothing else.
    let n = rdd_kit::owned::cleanup(&admin, "own", &uid).await.unwrap();
    assert_eq!(n, 1);
    assert!(secrets.get_opt("sec-owned").await.unwrap().is_none());
    for kept in ["owner", "cm-free", "cm-other"] {
        assert!(cms.get_opt(kept).await.unwrap().is_some(), "{kept}");
    }
    // Idempotent: nothing left to do.
    assert_eq!(
        rdd_kit::owned::cleanup(&admin, "own", &uid).await.unwrap(),
        0
    );
}
