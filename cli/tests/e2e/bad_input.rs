//! Bad input gets a 4xx Status and writes nothing.

use serde_json::{Value, json};

use crate::harness::{Server, fixture, raw};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn count_configmaps(c: &kube::Client) -> (usize, String) {
    let (code, v) = raw(c, "GET", CMS, "application/json", vec![]).await;
    assert_eq!(code, 200);
    (
        v["items"].as_array().unwrap().len(),
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

fn assert_status(code: u16, v: &Value, want: u16, reason: &str) {
    assert_eq!(code, want, "{v}");
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["code"], want, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_bad_input_is_rejected_with_status_and_writes_nothing() {
    let s = Server::start();
    let c = s.client().await;
    let before = count_configmaps(&c).await;
    let post = |body: &str, ct: &str| (CMS.to_string(), body.to_string(), ct.to_string());
    let cases: Vec<((String, String, String), u16, &str)> = vec![
        (
            post("{\"apiVersion\":\"v1\",", "application/json"),
            400,
            "BadRequest",
        ),
        (
            post("apiVersion: v1\nkind: [", "application/yaml"),
            400,
            "BadRequest",
        ),
        (
            post(
                r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"k"}}"#,
                "application/json",
            ),
            400,
            "BadRequest",
        ),
        (
            post(
                r#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"k"}}"#,
                "application/json",
            ),
            400,
            "BadRequest",
        ),
        (
            post(
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"k","namespace":"other"}}"#,
                "application/json",
            ),
            400,
            "BadRequest",
        ),
        (
            post(
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_A_Name"}}"#,
                "application/json",
            ),
            422,
            "Invalid",
        ),
        (
            post(
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"k","resourceVersion":"5"}}"#,
                "application/json",
            ),
            400,
            "BadRequest",
        ),
        (
            post(
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"k"},"data":{"a":1}}"#,
                "application/json",
            ),
            422,
            "Invalid",
        ),
        (
            (
                format!("{CMS}?fieldValidation=Strict"),
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"k"},"bogus":1}"#
                    .into(),
                "application/json".into(),
            ),
            400,
            "BadRequest",
        ),
        (
            (
                format!("{CMS}?dryRun=Maybe"),
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"k"}}"#.into(),
                "application/json".into(),
            ),
            400,
            "BadRequest",
        ),
    ];
    for ((path, body, ct), want, reason) in cases {
        let (code, v) = raw(&c, "POST", &path, &ct, body.clone().into_bytes()).await;
        assert_status(code, &v, want, reason);
        if path.contains("Strict") {
            assert!(
                v["message"]
                    .as_str()
                    .unwrap()
                    .contains("unknown field \"bogus\""),
                "{v}"
            );
        }
    }
    // URL name and body name disagree.
    let (code, v) = raw(
        &c,
        "PUT",
        &format!("{CMS}/a"),
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#.to_vec(),
    )
    .await;
    assert_status(code, &v, 400, "BadRequest");
    // 10 MiB body.
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    let (code, v) = raw(&c, "POST", CMS, "application/json", big.into_bytes()).await;
    assert_status(code, &v, 413, "RequestEntityTooLarge");
    // Create one object to patch, then patch it wrongly.
    let (code, _) = raw(
        &c,
        "POST",
        CMS,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"target"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 201);
    let mid = count_configmaps(&c).await;
    let (code, v) = raw(
        &c,
        "PATCH",
        &format!("{CMS}/target"),
        "text/plain",
        b"{}".to_vec(),
    )
    .await;
    assert_status(code, &v, 415, "UnsupportedMediaType");
    let (code, v) = raw(
        &c,
        "PATCH",
        &format!("{CMS}/target"),
        "application/merge-patch+json",
        b"{nope".to_vec(),
    )
    .await;
    assert_status(code, &v, 400, "BadRequest");
    // Watch on an unknown resource.
    let (code, v) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/gizmos?watch=true",
        "",
        vec![],
    )
    .await;
    assert_status(code, &v, 404, "NotFound");
    // Nothing was written by any failure: same objects, same revision.
    let after = count_configmaps(&c).await;
    assert_eq!(after, mid);
    assert_eq!(mid.0, before.0 + 1);
    // Anonymous requests get 401 with a Status; health stays public.
    let anon = s.anonymous_client().await;
    let (code, v) = raw(&anon, "GET", "/api", "", vec![]).await;
    assert_status(code, &v, 401, "Unauthorized");
    let (code, _) = raw(&anon, "GET", "/readyz", "", vec![]).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_custom_resource_schema_violations_are_invalid() {
    let s = Server::start();
    let c = s.client().await;
    let crd: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(fixture("widgets-crd.yaml")).unwrap())
            .unwrap();
    let (code, v) = raw(
        &c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        serde_json::to_vec(&crd).unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let path = "/apis/test.rdd.io/v1/namespaces/default/widgets";
    let bad = [
        (
            json!({"apiVersion":"test.rdd.io/v1","kind":"Widget","metadata":{"name":"a"},"spec":{"size":"big"}}),
            "spec.size",
        ),
        (
            json!({"apiVersion":"test.rdd.io/v1","kind":"Widget","metadata":{"name":"a"},"spec":{"size":1000}}),
            "spec.size",
        ),
        (
            json!({"apiVersion":"test.rdd.io/v1","kind":"Widget","metadata":{"name":"a"},"spec":{"size":1,"color":"pink"}}),
            "spec.color",
        ),
        (
            json!({"apiVersion":"test.rdd.io/v1","kind":"Widget","metadata":{"name":"a"},"spec":{}}),
            "spec.size",
        ),
    ];
    for (obj, field) in bad {
        let (code, v) = raw(
            &c,
            "POST",
            path,
            "application/json",
            serde_json::to_vec(&obj).unwrap(),
        )
        .await;
        assert_status(code, &v, 422, "Invalid");
        let causes = v["details"]["causes"].as_array().unwrap();
        assert!(causes.iter().any(|c| c["field"] == field), "{v}");
    }
    // Unknown fields: Strict → 400, Warn → pruned with a warning header.
    let obj = json!({"apiVersion":"test.rdd.io/v1","kind":"Widget","metadata":{"name":"ok"},"spec":{"size":1,"extra":true}});
    let (code, v) = raw(
        &c,
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        "application/json",
        serde_json::to_vec(&obj).unwrap(),
    )
    .await;
    assert_status(code, &v, 400, "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.extra\""),
        "{v}"
    );
    let (code, v) = raw(
        &c,
        "POST",
        path,
        "application/json",
        serde_json::to_vec(&obj).unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert!(v["spec"].get("extra").is_none(), "pruned: {v}");
    assert_eq!(v["spec"]["color"], "red", "defaulted: {v}");
}
