//! Request decoding and the write pipeline: arbitrary bodies sent as every write verb and body
//! format to built-in and rdd kinds. Every answer must be below 500 (a handler panic answers
//! 500), and every error must be a Status object.
//!
//! Input: byte 0 picks the operation, byte 1 the resource, the rest is the body.
#![no_main]

use std::sync::OnceLock;

use http::Method;
use libfuzzer_sys::fuzz_target;
use rdd_apiserver::offline::Offline;

const RESOURCES: &[&str] = &[
    "/api/v1/namespaces",
    "/api/v1/namespaces/fz/configmaps",
    "/api/v1/namespaces/fz/secrets",
    "/api/v1/namespaces/fz/services",
    "/api/v1/namespaces/fz/serviceaccounts",
    "/apis/apps/v1/namespaces/fz/deployments",
    "/apis/policy/v1/namespaces/fz/poddisruptionbudgets",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/fz/roles",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    "/apis/app.rancherdesktop.io/v1alpha1/namespaces/fz/apps",
    "/apis/lima.rancherdesktop.io/v1alpha1/namespaces/fz/limavms",
    "/apis/containers.rancherdesktop.io/v1alpha1/namespaces/fz/containers",
    "/apis/containers.rancherdesktop.io/v1alpha1/namespaces/fz/volumes",
    "/apis/containers.rancherdesktop.io/v1alpha1/namespaces/fz/images",
];

const CRDS: &[&str] = &[
    include_str!("../../deploy/crds/apps.app.rancherdesktop.io.yaml"),
    include_str!("../../deploy/crds/limavms.lima.rancherdesktop.io.yaml"),
    include_str!("../../deploy/crds/containers.containers.rancherdesktop.io.yaml"),
    include_str!("../../deploy/crds/volumes.containers.rancherdesktop.io.yaml"),
    include_str!("../../deploy/crds/images.containers.rancherdesktop.io.yaml"),
];

struct Harness {
    rt: tokio::runtime::Runtime,
    api: Offline,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let api = rt.block_on(async {
            let api = Offline::open(dir.path()).await.expect("open storage");
            let ns = br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fz"}}"#;
            let a = api
                .request(Method::POST, RESOURCES[0], "application/json", ns.to_vec())
                .await;
            assert_eq!(a.status, 201, "namespace: {:?}", a.body);
            for crd in CRDS {
                let a = api
                    .request(
                        Method::POST,
                        RESOURCES[9],
                        "application/yaml",
                        crd.as_bytes().to_vec(),
                    )
                    .await;
                assert_eq!(a.status, 201, "CRD: {:?}", a.body);
            }
            // Objects named `x` for the verbs that address one.
            for (i, path) in RESOURCES.iter().enumerate().skip(1).take(2) {
                let kind = ["", "ConfigMap", "Secret"][i];
                let body =
                    format!(r#"{{"apiVersion":"v1","kind":"{kind}","metadata":{{"name":"x"}}}}"#);
                let a = api
                    .request(Method::POST, path, "application/json", body.into_bytes())
                    .await;
                assert_eq!(a.status, 201, "{path}: {:?}", a.body);
            }
            api
        });
        Harness { rt, api, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let [op, res, body @ ..] = data else { return };
    let h = harness();
    let collection = RESOURCES[*res as usize % RESOURCES.len()];
    let one = format!("{collection}/x");
    let (method, path, content_type) = match op % 8 {
        0 => (Method::POST, collection.to_string(), "application/json"),
        1 => (Method::POST, collection.to_string(), "application/yaml"),
        2 => (Method::PUT, one, "application/json"),
        3 => (Method::PATCH, one, "application/merge-patch+json"),
        4 => (Method::PATCH, one, "application/strategic-merge-patch+json"),
        5 => (Method::PATCH, one, "application/json-patch+json"),
        6 => (
            Method::PATCH,
            format!("{one}?fieldManager=fz&force=true"),
            "application/apply-patch+yaml",
        ),
        _ => (
            Method::POST,
            format!("{collection}?dryRun=All"),
            "application/json",
        ),
    };
    let answer = h.rt.block_on(
        h.api
            .request(method.clone(), &path, content_type, body.to_vec()),
    );
    assert!(
        answer.status < 500,
        "{method} {path} ({content_type}) answered {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status >= 400 {
        let status: serde_json::Value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{method} {path}: error body is not JSON ({e})"));
        assert_eq!(status["kind"], "Status", "{method} {path}: {status}");
        assert_eq!(status["code"], answer.status, "{method} {path}: {status}");
    }
});
