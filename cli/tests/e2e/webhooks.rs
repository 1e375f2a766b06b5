//! Admission webhooks end to end: `rdd svc serve` calls webhooks served by the kit's webhook
//! server (`rdd_kit::webhook`) in this test process over HTTPS verified with `caBundle`;
//! kubectl v1.32 and v1.37 see denials, warnings, stored mutations and webhook failures.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use rdd_kit::webhook::Routes;
use serde_json::{Value, json};

use crate::harness::{KUBECTL_OLD, Server, kubectl_new};

/// Every review received: (path, the request as JSON).
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

struct Webhooks {
    port: u16,
    ca: String,
    calls: Calls,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A self-signed serving certificate for 127.0.0.1: (cert PEM, key PEM, caBundle).
fn tls_material() -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    let ca = base64::engine::general_purpose::STANDARD.encode(cert.pem());
    (cert.pem(), key.serialize_pem(), ca)
}

impl Webhooks {
    async fn start(routes: Routes, calls: Calls) -> Webhooks {
        let (cert, key, ca) = tls_material();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let addr = rdd_kit::webhook::serve_until(
            "127.0.0.1:0".parse().unwrap(),
            &cert,
            &key,
            routes,
            async move {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
        Webhooks {
            port: addr.port(),
            ca,
            calls,
            stop: Some(tx),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The requests received on `path`, oldest first.
    fn calls(&self, path: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn last(&self, path: &str) -> Value {
        self.calls(path)
            .pop()
            .unwrap_or_else(|| panic!("no call on {path}"))
    }

    /// Close the listener: the webhook is down from now on.
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // Let the accept loop see the signal and drop the listener.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A handler that records each request before `f` answers it.
fn recorded(
    calls: &Calls,
    path: &'static str,
    f: impl Fn(&AdmissionRequest<DynamicObject>) -> AdmissionResponse + Send + Sync + 'static,
) -> impl Fn(&AdmissionRequest<DynamicObject>) -> AdmissionResponse + Send + Sync + 'static {
    let calls = calls.clone();
    move |req| {
        calls
            .lock()
            .unwrap()
            .push((path.to_string(), serde_json::to_value(req).unwrap()));
        f(req)
    }
}

fn labels(o: Option<&DynamicObject>) -> std::collections::BTreeMap<String, String> {
    o.and_then(|o| o.metadata.labels.clone())
        .unwrap_or_default()
}

fn webhook(name: &str, url: &str, ca: &str, rules: Value, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

fn configuration(kind: &str, name: &str, webhooks: Vec<Value>) -> String {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": webhooks,
    })
    .to_string()
}

fn configmap(ns: &str, name: &str, labels: Value, annotations: Value) -> String {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "data": {"a": "b"},
    })
    .to_string()
}

fn old() -> PathBuf {
    PathBuf::from(KUBECTL_OLD)
}

/// `kubectl <args> -f -` with `input`; returns (success, stdout, stderr).
fn kubectl_in(s: &Server, k: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-f", "-"]);
    let o = s.apply_stdin(k, &all, input);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn must(s: &Server, k: &Path, args: &[&str], input: &str) -> String {
    let (ok, out, err) = kubectl_in(s, k, args, input);
    assert!(ok, "kubectl {args:?} failed: {out}\n{err}");
    err
}

fn refused(s: &Server, k: &Path, args: &[&str], input: &str) -> String {
    let (ok, out, err) = kubectl_in(s, k, args, input);
    assert!(!ok, "kubectl {args:?} unexpectedly succeeded: {out}\n{err}");
    err
}

const VALIDATE: &str = "validate.wh.rdd.test";

/// A validating webhook: denial messages reach kubectl (v1.32 and v1.37), warnings become
/// `Warning:` lines, namespace/object selectors and matchConditions pick what is reviewed, the
/// review carries CREATE/UPDATE/DELETE with object/oldObject, user and options, dry runs are
/// reviewed with `dryRun: true`, and a webhook with side effects refuses dry runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validating_webhook_reviews_denies_and_selects() {
    let s = Server::start();
    let calls = Calls::default();
    let routes = Routes::default()
        .handle(
            "/validate",
            recorded(&calls, "/validate", |req| {
                let obj = req.object.as_ref().or(req.old_object.as_ref());
                let l = labels(obj);
                match req.operation {
                    Operation::Delete if l.contains_key("protect") => {
                        AdmissionResponse::from(req).deny("protected configmap")
                    }
                    Operation::Create | Operation::Update if l.contains_key("deny") => {
                        AdmissionResponse::from(req).deny("configmap has deny label")
                    }
                    _ => {
                        let mut r = AdmissionResponse::from(req);
                        r.warnings = Some(vec!["reviewed by the validate webhook".into()]);
                        r
                    }
                }
            }),
        )
        .handle(
            "/side",
            recorded(&calls, "/side", |req| AdmissionResponse::from(req)),
        );
    let wh = Webhooks::start(routes, calls).await;
    let k = old();
    for ns in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wh", "labels": {"wh": "yes"}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    ] {
        must(&s, &k, &["apply"], &ns.to_string());
    }
    let cfg = configuration(
        "ValidatingWebhookConfiguration",
        "validate",
        vec![webhook(
            VALIDATE,
            &wh.url("/validate"),
            &wh.ca,
            json!([{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]),
            json!({
                "namespaceSelector": {"matchLabels": {"wh": "yes"}},
                "objectSelector": {"matchExpressions": [{"key": "webhook", "operator": "In", "values": ["on"]}]},
                "matchConditions": [{"name": "not-skipped", "expression":
                    "request.operation == 'DELETE' || !has(object.metadata.annotations) || !('skip' in object.metadata.annotations)"}],
            }),
        )],
    );
    must(&s, &k, &["apply"], &cfg);

    // A denial reaches both kubectl versions with the webhook's message.
    for (i, k) in [old(), kubectl_new()].iter().enumerate() {
        let err = refused(
            &s,
            k,
            &["apply"],
            &configmap(
                "wh",
                &format!("denied-{i}"),
                json!({"webhook": "on", "deny": "1"}),
                json!({}),
            ),
        );
        assert!(
            err.contains(
                "admission webhook \"validate.wh.rdd.test\" denied the request: configmap has deny label"
            ),
            "{err}"
        );
    }
    let reviewed = wh.calls("/validate").len();
    assert_eq!(reviewed, 2);
    // Not selected: no webhook label, an unlabelled namespace, a false matchCondition.
    must(
        &s,
        &k,
        &["apply"],
        &configmap("wh", "no-label", json!({"deny": "1"}), json!({})),
    );
    must(
        &s,
        &k,
        &["apply"],
        &configmap(
            "other",
            "other-ns",
            json!({"webhook": "on", "deny": "1"}),
            json!({}),
        ),
    );
    must(
        &s,
        &k,
        &["apply"],
        &configmap(
            "wh",
            "skipped",
            json!({"webhook": "on", "deny": "1"}),
            json!({"skip": "1"}),
        ),
    );
    assert_eq!(
        wh.calls("/validate").len(),
        reviewed,
        "none of these reviewed"
    );

    // CREATE: the review as upstream builds it; the warning reaches kubectl.
    let err = must(
        &s,
        &kubectl_new(),
        &["apply"],
        &configmap(
            "wh",
            "keep",
            json!({"webhook": "on", "protect": "1"}),
            json!({}),
        ),
    );
    assert!(
        err.contains("Warning: reviewed by the validate webhook"),
        "{err}"
    );
    let r = wh.last("/validate");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["name"], "keep");
    assert_eq!(r["namespace"], "wh");
    // (kube-core re-serializes GroupVersionResource with an extra `api_version`.)
    let gvr = |v: &Value| {
        (
            v["group"].clone(),
            v["version"].clone(),
            v["resource"].clone(),
        )
    };
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        gvr(&r["resource"]),
        (json!(""), json!("v1"), json!("configmaps"))
    );
    assert_eq!(r["requestKind"], r["kind"]);
    assert_eq!(gvr(&r["requestResource"]), gvr(&r["resource"]));
    assert_eq!(r["userInfo"]["username"], "rdd-admin");
    assert!(
        r["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters")),
        "{r}"
    );
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    assert_eq!(r["object"]["metadata"]["labels"]["protect"], "1");
    assert!(r["oldObject"].is_null(), "{r}");

    // UPDATE (a patch): old and new object, PatchOptions.
    s.ok(&k, &["label", "configmap", "keep", "-n", "wh", "extra=1"]);
    let r = wh.last("/validate");
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(r["options"]["kind"], "PatchOptions");
    assert_eq!(r["object"]["metadata"]["labels"]["extra"], "1");
    assert!(
        r["oldObject"]["metadata"]["resourceVersion"].is_string(),
        "{r}"
    );
    assert!(
        r["oldObject"]["metadata"]["labels"].get("extra").is_none(),
        "{r}"
    );

    // DELETE, dry run first: reviewed with dryRun, oldObject set, object null.
    for k in [old(), kubectl_new()] {
        let err = s.fails(
            &k,
            &[
                "delete",
                "configmap",
                "keep",
                "-n",
                "wh",
                "--dry-run=server",
            ],
        );
        assert!(err.contains("protected configmap"), "{err}");
    }
    let r = wh.last("/validate");
    assert_eq!(r["operation"], "DELETE");
    assert_eq!(r["dryRun"], true);
    assert!(r["object"].is_null(), "{r}");
    assert_eq!(r["oldObject"]["metadata"]["name"], "keep");
    assert_eq!(r["options"]["kind"], "DeleteOptions");
    assert_eq!(r["options"]["dryRun"], json!(["All"]));
    let err = s.fails(&k, &["delete", "configmap", "keep", "-n", "wh"]);
    assert!(
        err.contains(
            "admission webhook \"validate.wh.rdd.test\" denied the request: protected configmap"
        ),
        "{err}"
    );
    assert_eq!(wh.last("/validate")["dryRun"], false);
    s.ok(&k, &["get", "configmap", "keep", "-n", "wh"]);
    s.ok(&k, &["label", "configmap", "keep", "-n", "wh", "protect-"]);
    s.ok(&k, &["delete", "configmap", "keep", "-n", "wh"]);
    assert_eq!(wh.last("/validate")["operation"], "DELETE");

    // A dry-run create is reviewed with dryRun and stores nothing.
    must(
        &s,
        &k,
        &["apply", "--dry-run=server"],
        &configmap("wh", "dry", json!({"webhook": "on"}), json!({})),
    );
    let r = wh.last("/validate");
    assert_eq!(
        (r["operation"].clone(), r["dryRun"].clone()),
        (json!("CREATE"), json!(true))
    );
    assert_eq!(r["options"]["dryRun"], json!(["All"]));
    s.fails(&k, &["get", "configmap", "dry", "-n", "wh"]);

    // sideEffects other than None/NoneOnDryRun: dry runs are refused (400) without a call.
    let side = configuration(
        "ValidatingWebhookConfiguration",
        "side-effects",
        vec![webhook(
            "side.wh.rdd.test",
            &wh.url("/side"),
            &wh.ca,
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]),
            json!({"sideEffects": "Some", "objectSelector": {"matchLabels": {"side": "yes"}}}),
        )],
    );
    must(&s, &k, &["apply"], &side);
    let cm = configmap("default", "side", json!({"side": "yes"}), json!({}));
    let err = refused(&s, &k, &["apply", "--dry-run=server"], &cm);
    assert!(
        err.contains("admission webhook \"side.wh.rdd.test\" does not support dry run"),
        "{err}"
    );
    assert!(err.contains("BadRequest"), "{err}");
    assert!(wh.calls("/side").is_empty());
    must(&s, &k, &["apply"], &cm);
    assert_eq!(wh.calls("/side").len(), 1);
}

/// Mutating webhooks: the patch is stored, mutating runs before validating webhooks, the CRD
/// schema validates (and prunes, defaults) the mutated object, and with `matchPolicy:
/// Equivalent` a webhook for v1 sees a v2 request in v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutating_webhook_patch_is_stored_before_validation() {
    let s = Server::start();
    let calls = Calls::default();
    let patch = |ops: Value| -> json_patch::Patch { serde_json::from_value(ops).unwrap() };
    let routes = Routes::default()
        .handle(
            "/mutate-gadget",
            recorded(&calls, "/mutate-gadget", move |req| {
                let obj = req.object.as_ref().unwrap();
                let mut ops = vec![
                    json!({"op": "add", "path": "/spec/tier", "value": "gold"}),
                    json!({"op": "add", "path": "/spec/junk", "value": "pruned"}),
                ];
                ops.push(if obj.metadata.labels.is_some() {
                    json!({"op": "add", "path": "/metadata/labels/mutated", "value": "yes"})
                } else {
                    json!({"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}})
                });
                if obj.data["spec"]["size"] == json!(5) {
                    ops.push(json!({"op": "replace", "path": "/spec/size", "value": 100}));
                }
                let mut r = AdmissionResponse::from(req)
                    .with_patch(patch(Value::Array(ops)))
                    .unwrap();
                r.warnings = Some(vec!["gadget mutated".into()]);
                r
            }),
        )
        .handle(
            "/check-gadget",
            recorded(&calls, "/check-gadget", |req| {
                let obj = req.object.as_ref().unwrap();
                if obj.data["spec"]["tier"] != json!("gold")
                    || !labels(Some(obj)).contains_key("mutated")
                {
                    return AdmissionResponse::from(req).deny("saw an unmutated gadget");
                }
                AdmissionResponse::from(req)
            }),
        )
        .handle(
            "/inject",
            recorded(&calls, "/inject", move |req| {
                AdmissionResponse::from(req)
                    .with_patch(patch(
                        json!([{"op": "add", "path": "/data/injected", "value": "by-webhook"}]),
                    ))
                    .unwrap()
            }),
        );
    let wh = Webhooks::start(routes, calls).await;
    let k = old();
    let versions: Vec<Value> = ["v1", "v2"]
        .iter()
        .map(|v| {
            json!({
                "name": v, "served": true, "storage": *v == "v1",
                "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": {
                    "spec": {"type": "object", "required": ["tier"], "properties": {
                        "size": {"type": "integer", "maximum": 10},
                        "tier": {"type": "string", "enum": ["gold", "silver"]},
                        "note": {"type": "string", "default": "defaulted"}}}}}}
            })
        })
        .collect();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.wh.rdd.test"},
        "spec": {"group": "wh.rdd.test", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": versions}
    });
    must(&s, &k, &["apply"], &crd.to_string());
    s.ok(
        &k,
        &[
            "wait",
            "--for=condition=Established",
            "crd/gadgets.wh.rdd.test",
        ],
    );
    let gadget_rule = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["wh.rdd.test"], "apiVersions": ["v1"], "resources": ["gadgets"]}]);
    must(
        &s,
        &k,
        &["apply"],
        &configuration(
            "MutatingWebhookConfiguration",
            "mutate",
            vec![
                webhook(
                    "gadget.wh.rdd.test",
                    &wh.url("/mutate-gadget"),
                    &wh.ca,
                    gadget_rule.clone(),
                    json!({}),
                ),
                webhook(
                    "inject.wh.rdd.test",
                    &wh.url("/inject"),
                    &wh.ca,
                    json!([{"operations": ["CREATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]),
                    json!({"objectSelector": {"matchLabels": {"inject": "yes"}}}),
                ),
            ],
        ),
    );
    must(
        &s,
        &k,
        &["apply"],
        &configuration(
            "ValidatingWebhookConfiguration",
            "check",
            vec![webhook(
                "check.wh.rdd.test",
                &wh.url("/check-gadget"),
                &wh.ca,
                gadget_rule,
                json!({"matchPolicy": "Exact"}),
            )],
        ),
    );

    // No tier (which the schema requires): the webhook adds it before validation.
    let g1 = r#"{"apiVersion": "wh.rdd.test/v1", "kind": "Gadget", "metadata": {"name": "g1", "namespace": "default"}, "spec": {"size": 1}}"#;
    let err = must(&s, &k, &["apply"], g1);
    assert!(err.contains("Warning: gadget mutated"), "{err}");
    let stored: Value =
        serde_json::from_str(&s.ok(&k, &["get", "gadgets", "g1", "-n", "default", "-o", "json"]))
            .unwrap();
    assert_eq!(stored["spec"]["tier"], "gold", "{stored}");
    assert_eq!(stored["metadata"]["labels"]["mutated"], "yes");
    assert_eq!(stored["spec"]["note"], "defaulted");
    assert!(
        stored["spec"].get("junk").is_none(),
        "unknown fields a webhook adds are pruned: {stored}"
    );
    let all = wh.calls.lock().unwrap().clone();
    let at = |p: &str| all.iter().position(|(path, _)| path == p).unwrap();
    assert!(
        at("/mutate-gadget") < at("/check-gadget"),
        "mutating before validating"
    );
    assert!(
        wh.last("/mutate-gadget")["object"]["spec"]
            .get("tier")
            .is_none()
    );
    assert_eq!(wh.last("/check-gadget")["object"]["spec"]["tier"], "gold");

    // The mutation makes the object invalid: the schema sees the mutated object (422) and the
    // validating webhook is not reached.
    let checked = wh.calls("/check-gadget").len();
    let g2 = r#"{"apiVersion": "wh.rdd.test/v1", "kind": "Gadget", "metadata": {"name": "g2", "namespace": "default"}, "spec": {"size": 5}}"#;
    let err = refused(&s, &kubectl_new(), &["apply"], g2);
    assert!(err.contains("spec.size"), "{err}");
    assert!(err.contains("less than or equal to 10"), "{err}");
    assert_eq!(wh.calls("/check-gadget").len(), checked);

    // Equivalent: a v2 request goes to the v1 webhook in v1 (the validating one is Exact).
    let g3 = r#"{"apiVersion": "wh.rdd.test/v2", "kind": "Gadget", "metadata": {"name": "g3", "namespace": "default"}, "spec": {"size": 2}}"#;
    must(&s, &k, &["apply"], g3);
    let r = wh.last("/mutate-gadget");
    assert_eq!(r["kind"]["version"], "v1");
    assert_eq!(r["requestKind"]["version"], "v2");
    assert_eq!(r["resource"]["version"], "v1");
    assert_eq!(r["object"]["apiVersion"], "wh.rdd.test/v1");
    assert_eq!(
        wh.calls("/check-gadget").len(),
        checked,
        "Exact: not for v2"
    );
    let tier = s.ok(
        &k,
        &[
            "get",
            "gadgets.v2.wh.rdd.test",
            "g3",
            "-n",
            "default",
            "-o",
            "jsonpath={.apiVersion} {.spec.tier}",
        ],
    );
    assert_eq!(tier, "wh.rdd.test/v2 gold");

    // A built-in kind: the patch is stored; a dry run is mutated but stores nothing.
    let cm = configmap("default", "injected", json!({"inject": "yes"}), json!({}));
    let out = {
        let (ok, out, err) = kubectl_in(&s, &k, &["create", "--dry-run=server", "-o", "json"], &cm);
        assert!(ok, "{err}");
        out
    };
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["data"]["injected"],
        "by-webhook"
    );
    s.fails(&k, &["get", "configmap", "injected"]);
    must(&s, &k, &["create"], &cm);
    assert_eq!(
        s.ok(
            &k,
            &[
                "get",
                "configmap",
                "injected",
                "-o",
                "jsonpath={.data.injected}"
            ]
        ),
        "by-webhook"
    );
    // A DELETE has no object to patch: a webhook answering one with a patch fails the delete.
    let err = s.fails(&k, &["delete", "configmap", "injected"]);
    assert!(
        err.contains("admission webhook \"inject.wh.rdd.test\" attempted to modify the object, which is not supported for this operation"),
        "{err}"
    );
    assert_eq!(wh.last("/inject")["operation"], "DELETE");
    s.ok(&k, &["get", "configmap", "injected"]);
}

/// failurePolicy with the webhook down (listener closed), too slow (timeoutSeconds), untrusted
/// (wrong caBundle) or unreachable (a Service): Fail refuses with 500 InternalError, Ignore lets
/// the write through. Removing the configuration takes effect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_policy_when_the_webhook_fails() {
    let s = Server::start();
    let calls = Calls::default();
    let routes = Routes::default()
        .handle(
            "/allow",
            recorded(&calls, "/allow", |req| AdmissionResponse::from(req)),
        )
        .handle(
            "/slow",
            recorded(&calls, "/slow", |req| {
                std::thread::sleep(Duration::from_secs(3));
                AdmissionResponse::from(req)
            }),
        );
    let mut wh = Webhooks::start(routes, calls).await;
    let (_, _, other_ca) = tls_material();
    let k = old();
    let rules = json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]);
    let hook = |name: &str, path: &str, ca: &str, policy: &str, extra: Value| {
        let mut x =
            json!({"failurePolicy": policy, "objectSelector": {"matchLabels": {"policy": name}}});
        for (k, v) in extra.as_object().unwrap() {
            x[k] = v.clone();
        }
        webhook(
            &format!("{name}.wh.rdd.test"),
            &wh.url(path),
            ca,
            rules.clone(),
            x,
        )
    };
    must(
        &s,
        &k,
        &["apply"],
        &configuration(
            "ValidatingWebhookConfiguration",
            "policies",
            vec![
                hook("fail", "/allow", &wh.ca, "Fail", json!({})),
                hook("ignore", "/allow", &wh.ca, "Ignore", json!({})),
                hook(
                    "slow",
                    "/slow",
                    &wh.ca,
                    "Fail",
                    json!({"timeoutSeconds": 1}),
                ),
                hook("badca", "/allow", &other_ca, "Fail", json!({})),
                hook(
                    "service",
                    "/allow",
                    &wh.ca,
                    "Fail",
                    json!({"clientConfig": {"service": {"namespace": "default", "name": "hooks", "port": 443}}}),
                ),
            ],
        ),
    );
    must(
        &s,
        &k,
        &["apply"],
        &configuration(
            "MutatingWebhookConfiguration",
            "mutating-policies",
            vec![hook("mfail", "/allow", &wh.ca, "Fail", json!({}))],
        ),
    );
    let cm =
        |name: &str, policy: &str| configmap("default", name, json!({"policy": policy}), json!({}));
    must(&s, &k, &["create"], &cm("up-fail", "fail"));
    must(&s, &k, &["create"], &cm("up-mfail", "mfail"));
    must(&s, &k, &["create"], &cm("up-ignore", "ignore"));
    assert_eq!(wh.calls("/allow").len(), 3);

    let started = std::time::Instant::now();
    let err = refused(&s, &k, &["create"], &cm("slow", "slow"));
    assert!(
        err.contains("failed calling webhook \"slow.wh.rdd.test\"")
            && err.contains("context deadline exceeded"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeoutSeconds: 1 honoured"
    );
    let err = refused(&s, &k, &["create"], &cm("badca", "badca"));
    assert!(
        err.contains("failed calling webhook \"badca.wh.rdd.test\"")
            && err.contains("invalid peer certificate"),
        "the server is verified with caBundle: {err}"
    );
    let err = refused(&s, &k, &["create"], &cm("service", "service"));
    assert!(err.contains("no Service network"), "{err}");

    wh.stop().await;
    let calls_before = wh.calls("/allow").len();
    for (i, k) in [old(), kubectl_new()].iter().enumerate() {
        let err = refused(&s, k, &["create"], &cm(&format!("down-fail-{i}"), "fail"));
        assert!(
            err.contains("InternalError")
                && err.contains(&format!(
                    "Internal error occurred: failed calling webhook \"fail.wh.rdd.test\": failed to call webhook: Post \"https://127.0.0.1:{}/allow?timeout=10s\"",
                    wh.port
                )),
            "{err}"
        );
        let err = refused(&s, k, &["create"], &cm(&format!("down-mfail-{i}"), "mfail"));
        assert!(
            err.contains("failed calling webhook \"mfail.wh.rdd.test\""),
            "{err}"
        );
        must(
            &s,
            k,
            &["create"],
            &cm(&format!("down-ignore-{i}"), "ignore"),
        );
    }
    assert_eq!(wh.calls("/allow").len(), calls_before, "nothing answered");
    s.ok(&k, &["get", "configmap", "down-ignore-0", "down-ignore-1"]);

    // Webhook configurations are never reviewed, so a broken webhook can be removed; its
    // removal applies to the next write.
    s.ok(
        &k,
        &["delete", "validatingwebhookconfiguration", "policies"],
    );
    s.ok(
        &k,
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "mutating-policies",
        ],
    );
    must(&s, &k, &["create"], &cm("after-fail", "fail"));
    must(&s, &k, &["create"], &cm("after-mfail", "mfail"));
}
