//! API semantics checked over raw HTTP with the admin credentials: discovery forms, tables,
//! resourceVersion and compaction, watch bookmarks, finalizers, namespaces, dry run, warnings.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, fixture, raw, raw_full, watch_events};

const V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

fn v(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

async fn install_widgets(c: &kube::Client) {
    let crd: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(fixture("widgets-crd.yaml")).unwrap())
            .unwrap();
    let (code, body) = raw(
        c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        serde_json::to_vec(&crd).unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

async fn post(c: &kube::Client, path: &str, obj: Value) -> Value {
    let (code, body) = raw(
        c,
        "POST",
        path,
        "application/json",
        serde_json::to_vec(&obj).unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_discovery_aggregated_legacy_and_etag() {
    let s = Server::start();
    let c = s.client().await;
    install_widgets(&c).await;
    let (code, h, body) = raw_full(&c, "GET", "/apis", &[("accept", V2)], vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(
        h["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let doc = v(&body);
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    let widgets = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "test.rdd.io")
        .expect("CRD group in aggregated discovery");
    let r = &widgets["versions"][0]["resources"][0];
    assert_eq!(r["resource"], "widgets");
    assert_eq!(r["scope"], "Namespaced");
    assert_eq!(r["shortNames"], json!(["wdg"]));
    assert_eq!(r["categories"], json!(["rddtest"]));
    assert_eq!(r["subresources"][0]["subresource"], "status");
    let etag = h["etag"].to_str().unwrap().to_string();
    let (code, _, _) = raw_full(
        &c,
        "GET",
        "/apis",
        &[("accept", V2), ("if-none-match", &etag)],
        vec![],
    )
    .await;
    assert_eq!(code, 304);
    // Plain JSON gets the legacy group list, consistent with the aggregated form.
    let (_, h, body) = raw_full(
        &c,
        "GET",
        "/apis",
        &[("accept", "application/json")],
        vec![],
    )
    .await;
    assert_eq!(h["content-type"], "application/json");
    let legacy = v(&body);
    assert_eq!(legacy["kind"], "APIGroupList");
    let names: Vec<&str> = legacy["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    let agg: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, agg);
    let (_, _, body) = raw_full(&c, "GET", "/apis/test.rdd.io/v1", &[], vec![]).await;
    let list = v(&body);
    assert!(
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "widgets/status")
    );
    // Core group in the aggregated form.
    let (_, _, body) = raw_full(&c, "GET", "/api", &[("accept", V2)], vec![]).await;
    assert_eq!(v(&body)["items"][0]["metadata"]["name"], "");
    // kubectl uses one aggregated request and no per-group-version ones.
    let o = s.kubectl_with(
        std::path::Path::new(crate::harness::KUBECTL_OLD),
        &["api-resources", "-v=6"],
    );
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("/apis 200") || log.contains("GET https://127.0.0.1"),
        "{log}"
    );
    assert!(
        !log.contains("/apis/test.rdd.io/v1 200"),
        "kubectl fell back to legacy discovery: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_discovery_legacy_only_gives_same_kubectl_output() {
    let a = Server::start();
    let b = Server::start_with(&["--disable-aggregated-discovery"]);
    let k = std::path::Path::new(crate::harness::KUBECTL_OLD);
    let out_a = a.ok(k, &["api-resources"]);
    let out_b = b.ok(k, &["api-resources"]);
    assert_eq!(out_a, out_b);
    let (_, h, _) = raw_full(&b.client().await, "GET", "/apis", &[("accept", V2)], vec![]).await;
    assert_eq!(h["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_tables_for_builtins_and_crds() {
    let s = Server::start();
    let c = s.client().await;
    install_widgets(&c).await;
    post(&c, CMS, cm("t1")).await;
    post(&c, "/apis/test.rdd.io/v1/namespaces/default/widgets", json!({"apiVersion": "test.rdd.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 5}})).await;
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let (_, _, body) = raw_full(&c, "GET", CMS, &[("accept", table)], vec![]).await;
    let t = v(&body);
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, vec!["Name", "Data", "Age"]);
    assert_eq!(t["rows"][0]["cells"][0], "t1");
    assert_eq!(t["rows"][0]["cells"][1], 1);
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let (_, _, body) = raw_full(
        &c,
        "GET",
        "/apis/test.rdd.io/v1/namespaces/default/widgets?includeObject=Object",
        &[("accept", table)],
        vec![],
    )
    .await;
    let t = v(&body);
    let cols: Vec<(String, i64)> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cols[0].0, "Name");
    assert!(cols.contains(&("Note".to_string(), 1)));
    assert_eq!(t["rows"][0]["cells"][1], 5);
    assert_eq!(t["rows"][0]["object"]["spec"]["size"], 5);
    // A CRD without printer columns gets Name and Age.
    let (_, _, body) = raw_full(
        &c,
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &[("accept", table)],
        vec![],
    )
    .await;
    assert_eq!(v(&body)["rows"][0]["cells"][0], "widgets.test.rdd.io");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_resource_versions_compaction_and_410() {
    let s = Server::start_with(&[
        "--compaction-interval-seconds",
        "1",
        "--compaction-keep-revisions",
        "0",
    ]);
    let c = s.client().await;
    let first = post(&c, CMS, cm("a")).await;
    let rv_a: i64 = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..6 {
        post(&c, CMS, cm(&format!("p{i}"))).await;
    }
    // Exact list at an old revision shows the history, before compaction.
    let (code, body) = raw(
        &c,
        "GET",
        &format!("{CMS}?resourceVersion={rv_a}&resourceVersionMatch=Exact"),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let (code, page1) = raw(&c, "GET", &format!("{CMS}?limit=3"), "", vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(page1["metadata"]["remainingItemCount"], 4);
    let cont = page1["metadata"]["continue"].as_str().unwrap().to_string();
    // No bad parameter combinations.
    let (code, _) = raw(
        &c,
        "GET",
        &format!("{CMS}?resourceVersionMatch=Exact"),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 400);
    // One more write, then wait for compaction to pass it.
    post(&c, CMS, cm("late")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, body) = raw(
        &c,
        "GET",
        &format!("{CMS}?resourceVersion={rv_a}&resourceVersionMatch=Exact"),
        "",
        vec![],
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (410, Some("Expired")),
        "{body}"
    );
    let (code, body) = raw(
        &c,
        "GET",
        &format!("{CMS}?limit=3&continue={cont}"),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 410, "{body}");
    let fresh = body["metadata"]["continue"]
        .as_str()
        .expect("410 carries a fresh continue token");
    let (code, rest) = raw(
        &c,
        "GET",
        &format!("{CMS}?limit=10&continue={fresh}"),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{rest}");
    assert_eq!(
        rest["items"].as_array().unwrap().len(),
        4,
        "inconsistent continuation returns the keys after the last one served"
    );
    let (code, _) = watch_events(
        &c,
        &format!("{CMS}?watch=true&resourceVersion={rv_a}"),
        1,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(code, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_watch_resume_selectors_bookmarks_and_initial_events() {
    let s = Server::start();
    let c = s.client().await;
    let a = post(&c, CMS, cm("w1")).await;
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut m = cm("w2");
    m["metadata"]["labels"] = json!({"app": "x"});
    post(&c, CMS, m).await;
    raw(
        &c,
        "PATCH",
        &format!("{CMS}/w2"),
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"app":"y"}}}"#.to_vec(),
    )
    .await;
    raw(
        &c,
        "DELETE",
        &format!("{CMS}/w1"),
        "application/json",
        vec![],
    )
    .await;
    // Resume from w1's revision: exactly what came after, in order.
    let (code, evs) = watch_events(
        &c,
        &format!("{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        10,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(code, 200);
    let seen: Vec<(String, String)> = evs
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ADDED".into(), "w2".into()),
            ("MODIFIED".into(), "w2".into()),
            ("DELETED".into(), "w1".into())
        ]
    );
    // A label selector turns leaving the selection into DELETED.
    let (_, evs) = watch_events(
        &c,
        &format!("{CMS}?watch=true&resourceVersion={rv}&labelSelector=app%3Dx&timeoutSeconds=1"),
        10,
        Duration::from_secs(5),
    )
    .await;
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["ADDED", "DELETED"]);
    // Bookmarks: one before the server closes the stream at timeoutSeconds.
    let (_, evs) = watch_events(
        &c,
        &format!("{CMS}?watch=true&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={rv}"),
        10,
        Duration::from_secs(5),
    )
    .await;
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "BOOKMARK");
    assert!(
        last["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > rv.parse::<i64>().unwrap()
    );
    // Streaming list: snapshot, then the end-of-initial-events bookmark.
    let (_, evs) = watch_events(&c, &format!("{CMS}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"), 10, Duration::from_secs(5)).await;
    assert_eq!(evs[0]["type"], "ADDED");
    let end = evs
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("initial-events-end bookmark");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // sendInitialEvents without NotOlderThan is refused, never ignored.
    let (code, _) = raw(
        &c,
        "GET",
        &format!("{CMS}?watch=true&sendInitialEvents=true"),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_updates_noop_conflict_dry_run_and_warnings() {
    let s = Server::start();
    let c = s.client().await;
    let obj = post(&c, CMS, cm("u")).await;
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // A PUT that changes nothing keeps the revision.
    let (code, same) = raw(
        &c,
        "PUT",
        &format!("{CMS}/u"),
        "application/json",
        serde_json::to_vec(&obj).unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(same["metadata"]["resourceVersion"], rv.as_str());
    // A stale resourceVersion conflicts.
    let mut changed = obj.clone();
    changed["data"]["k"] = json!("w");
    raw(
        &c,
        "PUT",
        &format!("{CMS}/u"),
        "application/json",
        serde_json::to_vec(&changed).unwrap(),
    )
    .await;
    let (code, body) = raw(
        &c,
        "PUT",
        &format!("{CMS}/u"),
        "application/json",
        serde_json::to_vec(&changed).unwrap(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (409, Some("Conflict")),
        "{body}"
    );
    let (code, body) = raw(
        &c,
        "POST",
        CMS,
        "application/json",
        serde_json::to_vec(&cm("u")).unwrap(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    // Dry run stores nothing.
    let (code, _) = raw(
        &c,
        "POST",
        &format!("{CMS}?dryRun=All"),
        "application/json",
        serde_json::to_vec(&cm("dry")).unwrap(),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = raw(&c, "GET", &format!("{CMS}/dry"), "", vec![]).await;
    assert_eq!(code, 404);
    // ... and answers what the real create would: an existing name is a conflict.
    let (code, body) = raw(
        &c,
        "POST",
        &format!("{CMS}?dryRun=All"),
        "application/json",
        serde_json::to_vec(&cm("u")).unwrap(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let (code, _) = raw(
        &c,
        "PATCH",
        &format!("{CMS}/dry2?dryRun=All&fieldManager=t"),
        "application/apply-patch+yaml",
        serde_json::to_vec(&cm("dry2")).unwrap(),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = raw(&c, "GET", &format!("{CMS}/dry2"), "", vec![]).await;
    assert_eq!(code, 404);
    // Unknown fields under the default (Warn) validation: stored pruned, one warning header.
    let mut extra = cm("warned");
    extra["spec"] = json!({"nope": 1});
    let (code, h, body) = raw_full(
        &c,
        "POST",
        CMS,
        &[("content-type", "application/json")],
        serde_json::to_vec(&extra).unwrap(),
    )
    .await;
    assert_eq!(code, 201);
    assert!(v(&body).get("spec").is_none());
    assert_eq!(h["warning"], "299 - \"unknown field \\\"spec\\\"\"");
    // Strategic merge patch on a custom resource is refused with 415.
    install_widgets(&c).await;
    post(&c, "/apis/test.rdd.io/v1/namespaces/default/widgets", json!({"apiVersion": "test.rdd.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})).await;
    let (code, _) = raw(
        &c,
        "PATCH",
        "/apis/test.rdd.io/v1/namespaces/default/widgets/w",
        "application/strategic-merge-patch+json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(code, 415);
    // Status and spec are written separately; generation counts spec changes only.
    let (code, w) = raw(
        &c,
        "PATCH",
        "/apis/test.rdd.io/v1/namespaces/default/widgets/w/status",
        "application/merge-patch+json",
        br#"{"spec":{"size":9},"status":{"phase":"x"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{w}");
    assert_eq!(
        (
            w["spec"]["size"].as_i64(),
            w["status"]["phase"].as_str(),
            w["metadata"]["generation"].as_i64()
        ),
        (Some(1), Some("x"), Some(1))
    );
    let (_, w) = raw(
        &c,
        "PATCH",
        "/apis/test.rdd.io/v1/namespaces/default/widgets/w",
        "application/merge-patch+json",
        br#"{"spec":{"size":2},"status":{"phase":"ignored"}}"#.to_vec(),
    )
    .await;
    assert_eq!(
        (
            w["spec"]["size"].as_i64(),
            w["status"]["phase"].as_str(),
            w["metadata"]["generation"].as_i64()
        ),
        (Some(2), Some("x"), Some(2))
    );
    let (_, w) = raw(
        &c,
        "PATCH",
        "/apis/test.rdd.io/v1/namespaces/default/widgets/w",
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"a":"b"}}}"#.to_vec(),
    )
    .await;
    assert_eq!(
        w["metadata"]["generation"], 2,
        "metadata changes do not bump generation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_finalizers_and_namespace_deletion() {
    let s = Server::start();
    let c = s.client().await;
    post(
        &c,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
    )
    .await;
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    post(&c, "/api/v1/namespaces/doomed/configmaps", held).await;
    post(&c, "/api/v1/namespaces/doomed/configmaps", cm("free")).await;
    let (code, ns) = raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/doomed",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{ns}");
    assert_eq!(ns["status"]["phase"], "Terminating");
    // Creating inside a terminating namespace is forbidden.
    let (code, body) = raw(
        &c,
        "POST",
        "/api/v1/namespaces/doomed/configmaps",
        "application/json",
        serde_json::to_vec(&cm("late")).unwrap(),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    // Content without finalizers goes; the held object waits with a deletionTimestamp.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ns) = raw(&c, "GET", "/api/v1/namespaces/doomed", "", vec![]).await;
        let conds = ns["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conds
            .iter()
            .any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no NamespaceFinalizersRemaining: {ns}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/doomed/configmaps/free",
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 404);
    let (_, obj) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/doomed/configmaps/held",
        "",
        vec![],
    )
    .await;
    assert!(obj["metadata"]["deletionTimestamp"].is_string());
    // No new finalizer while deleting.
    let (code, body) = raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/doomed/configmaps/held",
        "application/merge-patch+json",
        br#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    // Releasing the finalizer lets the object, then the namespace, go.
    let (code, _) = raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/doomed/configmaps/held",
        "application/merge-patch+json",
        br#"{"metadata":{"finalizers":null}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = raw(&c, "GET", "/api/v1/namespaces/doomed", "", vec![]).await;
        if code == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace never went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/default",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 403, "{body}");
}

/// AT-28: 1000 concurrent GETs against an in-flight limit of 2: some get 429 with Retry-After,
/// none fail otherwise, the server stays healthy. Driven by curl's parallel mode because kube-rs
/// retries 429 by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_too_many_requests_get_429_with_retry_after() {
    let s = Server::start_with(&["--max-requests-inflight", "2"]);
    let c = s.client().await;
    for i in 0..50 {
        post(&c, CMS, cm(&format!("load{i}"))).await;
    }
    let tls = s.dir().join("tls");
    let url = format!("https://127.0.0.1:{}{CMS}", s.port());
    let mut cfg = String::new();
    for _ in 0..1000 {
        cfg.push_str(&format!("url = \"{url}\"\noutput = \"/dev/null\"\n"));
    }
    let cfg_path = s.home.path().join("urls.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--parallel",
            "--parallel-max",
            "300",
            "-w",
            "%{http_code} %header{retry-after}\n",
        ])
        .arg("--cacert")
        .arg(tls.join("ca.crt"))
        .arg("--cert")
        .arg(tls.join("admin.crt"))
        .arg("--key")
        .arg(tls.join("admin.key"))
        .arg("-K")
        .arg(&cfg_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1000,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let limited: Vec<&&str> = lines.iter().filter(|l| l.starts_with("429")).collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("200") || l.starts_with("429")),
        "{text}"
    );
    assert!(!limited.is_empty(), "no request was limited");
    assert!(
        limited.iter().all(|l| l.trim_end().ends_with(" 1")),
        "429 without Retry-After: {limited:?}"
    );
    let (code, _, _) = raw_full(&c, "GET", "/readyz", &[], vec![]).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_events_two_views_and_secrets() {
    let s = Server::start();
    let c = s.client().await;
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "rdd/test", "reportingInstance": "i",
        "action": "Reconcile", "reason": "Synced", "type": "Normal", "note": "all good",
        "regarding": {"kind": "ConfigMap", "name": "x", "namespace": "default", "apiVersion": "v1"}});
    post(&c, "/apis/events.k8s.io/v1/namespaces/default/events", ev).await;
    let (_, core) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/events/e1",
        "",
        vec![],
    )
    .await;
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "all good");
    assert_eq!(core["involvedObject"]["name"], "x");
    let (_, list) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dx,reason%3DSynced",
        "",
        vec![],
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let out = s.ok(
        std::path::Path::new(crate::harness::KUBECTL_OLD),
        &["get", "events"],
    );
    assert!(
        out.contains("Synced") && out.contains("configmap/x"),
        "{out}"
    );
    // Secrets: stringData is folded into base64 data.
    let secret = post(&c, "/api/v1/namespaces/default/secrets", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}})).await;
    assert_eq!(secret["data"]["pw"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");
    assert!(secret.get("stringData").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_cluster_scoped_crd_and_crd_deletion_removes_instances() {
    let s = Server::start();
    let c = s.client().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.rdd.io"},
        "spec": {"group": "test.rdd.io", "scope": "Cluster",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}});
    post(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        crd,
    )
    .await;
    let g = post(&c, "/apis/test.rdd.io/v1/gadgets", json!({"apiVersion": "test.rdd.io/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"anything": [1, 2]}})).await;
    assert!(g["metadata"].get("namespace").is_none());
    assert_eq!(
        g["spec"]["anything"],
        json!([1, 2]),
        "preserve-unknown-fields keeps content"
    );
    let (code, _) = raw(
        &c,
        "GET",
        "/apis/test.rdd.io/v1/namespaces/default/gadgets/g1",
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 404, "a cluster-scoped kind has no namespaced path");
    // A CRD that is not structural is refused.
    let bad = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.test.rdd.io"},
        "spec": {"group": "test.rdd.io", "scope": "Namespaced", "names": {"plural": "things", "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"properties": {"x": {"type": "string"}}}}}}}]}});
    let (code, body) = raw(
        &c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("type"), "{body}");
    // Deleting the CRD removes its instances, then the CRD and its discovery entry.
    let (code, _) = raw(
        &c,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.test.rdd.io",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = raw(
            &c,
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.test.rdd.io",
            "",
            vec![],
        )
        .await;
        if code == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CRD never went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = raw(&c, "GET", "/apis/test.rdd.io/v1", "", vec![]).await;
    assert_eq!(code, 404);
}

/// AT-31: owner + 3 dependents in each propagation mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_garbage_collection_background_foreground_orphan() {
    let s = Server::start();
    let c = s.client().await;
    for (mode, policy) in [("bg", "Background"), ("fg", "Foreground"), ("or", "Orphan")] {
        let owner = post(&c, CMS, cm(&format!("{mode}-owner"))).await;
        let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
        for i in 0..3 {
            let mut d = cm(&format!("{mode}-dep{i}"));
            d["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": format!("{mode}-owner"), "uid": uid, "blockOwnerDeletion": true}]);
            post(&c, CMS, d).await;
        }
        let body = serde_json::to_vec(
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy}),
        )
        .unwrap();
        let (code, resp) = raw(
            &c,
            "DELETE",
            &format!("{CMS}/{mode}-owner"),
            "application/json",
            body,
        )
        .await;
        assert_eq!(code, 200, "{resp}");
        if policy == "Foreground" {
            assert!(
                resp["metadata"]["finalizers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "foregroundDeletion"),
                "{resp}"
            );
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, owner_now) = raw(&c, "GET", &format!("{CMS}/{mode}-owner"), "", vec![]).await;
            let mut deps = Vec::new();
            for i in 0..3 {
                let (code, d) = raw(&c, "GET", &format!("{CMS}/{mode}-dep{i}"), "", vec![]).await;
                deps.push((code, d));
            }
            let owner_gone = owner_now["code"] == 404;
            let done = match policy {
                "Orphan" => {
                    owner_gone
                        && deps.iter().all(|(code, d)| {
                            *code == 200 && d["metadata"].get("ownerReferences").is_none()
                        })
                }
                _ => owner_gone && deps.iter().all(|(code, _)| *code == 404),
            };
            if done {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{policy}: owner {owner_now} dependents {deps:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
