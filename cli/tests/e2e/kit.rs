//! A small controller built on rdd-kit reconciles a test CRD end to end against `rdd svc`:
//! finalizer added once, a condition applied under its own field manager without touching
//! another writer's condition, no writes when nothing changed, cleanup on delete, and the admin
//! endpoint's health and controller-runtime metrics scraped.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{CustomResource, ResourceExt};
use rdd_kit::conditions::{self, Condition, Desired};
use rdd_kit::finalizer::{self, Plan};
use serde_json::json;

use crate::harness::{Server, fixture};

#[derive(
    CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema,
)]
#[kube(
    group = "test.rdd.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: i64,
}

#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, Default, schemars::JsonSchema)]
struct WidgetStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
}

const FIN: &str = "test.rdd.io/kit";
const MANAGER: &str = "widget-controller";

struct Ctx {
    api: Api<Widget>,
    applier: rdd_kit::apply::Applier,
    recorder: rdd_kit::events::Recorder,
}

/// | observed                          | action                         |
/// |-----------------------------------|--------------------------------|
/// | deleting, our finalizer present   | clean up, remove our finalizer |
/// | deleting, finalizer gone          | nothing                        |
/// | live, no finalizer                | add it                         |
/// | live, Ready differs from desired  | apply our Ready condition      |
/// | live, Ready as desired            | nothing (no write)             |
async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, rdd_kit::KitError> {
    let name = w.name_any();
    match finalizer::plan(w.as_ref(), FIN) {
        Plan::CleanupThenRemove => {
            finalizer::remove(&ctx.api, &name, FIN).await?;
            return Ok(Action::await_change());
        }
        Plan::Gone => return Ok(Action::await_change()),
        Plan::Add => {
            finalizer::ensure(&ctx.api, &name, FIN).await?;
        }
        Plan::Present => {}
    }
    let mut conds = w.status.clone().unwrap_or_default().conditions;
    let message = format!("size {}", w.spec.size);
    let desired = Desired {
        type_: "Ready",
        status: "True",
        reason: "Sized",
        message: &message,
        observed_generation: w.metadata.generation,
    };
    if conditions::set(&mut conds, &desired, &conditions::now()) {
        let ours = conditions::find(&conds, "Ready").cloned();
        ctx.applier
            .status(&ctx.api, &name, json!({"conditions": [ours]}))
            .await?;
        ctx.recorder
            .publish(w.as_ref(), false, "ConditionChanged", "Ready", &message)
            .await;
    }
    Ok(Action::await_change())
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_controller_end_to_end_with_metrics_and_quiescence() {
    let s = Server::start();
    let client = s.client().await;
    s.ok(
        std::path::Path::new(crate::harness::KUBECTL_OLD),
        &["apply", "-f", fixture("widgets-crd.yaml").to_str().unwrap()],
    );
    s.ok(
        std::path::Path::new(crate::harness::KUBECTL_OLD),
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.test.rdd.io",
        ],
    );
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let metrics = Arc::new(rdd_kit::metrics::Metrics::new());
    let health = rdd_kit::admin::Health::default();
    let admin = rdd_kit::admin::serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        health.clone(),
    )
    .await
    .unwrap();
    health.set_ready(true);
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        applier: rdd_kit::apply::Applier::new(MANAGER),
        recorder: rdd_kit::events::Recorder::new(client.clone(), MANAGER),
    });
    let ctrl = tokio::spawn(rdd_kit::runner::run(
        "widget",
        api.clone(),
        ctx,
        metrics.clone(),
        reconcile,
    ));

    api.create(
        &PostParams::default(),
        &Widget::new("w", WidgetSpec { size: 3 }),
    )
    .await
    .unwrap();
    eventually("finalizer and Ready", || async {
        let w = api.get("w").await.unwrap();
        let ready = w
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, "Ready").cloned());
        w.finalizers().iter().any(|f| f == FIN)
            && ready.is_some_and(|c| c.observed_generation == Some(1) && c.message == "size 3")
    })
    .await;
    // Another writer owns another condition; ours survives theirs and theirs survives ours.
    let other = json!({"apiVersion": "test.rdd.io/v1", "kind": "Widget", "status": {"conditions": [
        {"type": "Other", "status": "True", "reason": "Elsewhere", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status(
        "w",
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(other),
    )
    .await
    .unwrap();
    api.patch(
        "w",
        &PatchParams::apply("user").force(),
        &Patch::Apply(
            json!({"apiVersion": "test.rdd.io/v1", "kind": "Widget", "spec": {"size": 4}}),
        ),
    )
    .await
    .unwrap();
    eventually("Ready follows generation 2, Other kept", || async {
        let w = api.get("w").await.unwrap();
        let c = w.status.clone().unwrap_or_default().conditions;
        conditions::find(&c, "Ready")
            .is_some_and(|r| r.observed_generation == Some(2) && r.message == "size 4")
            && conditions::find(&c, "Other").is_some()
    })
    .await;
    // Each change was also published as an Event: the first one created it, the repeat (same
    // reason and object) was counted into its series, as kube-rs' recorder does.
    eventually("event with a series in kubectl get events", || async {
        let out = s.kubectl_with(
            std::path::Path::new(crate::harness::KUBECTL_OLD),
            &[
                "get",
                "events.v1.events.k8s.io",
                "--field-selector",
                "regarding.name=w",
                "-o",
                "jsonpath={.items[0].reason} {.items[0].series.count}",
            ],
        );
        String::from_utf8_lossy(&out.stdout) == "ConditionChanged 2"
    })
    .await;
    let table = s.ok(
        std::path::Path::new(crate::harness::KUBECTL_OLD),
        &["get", "events", "--field-selector", "involvedObject.name=w"],
    );
    assert!(
        table.contains("ConditionChanged") && table.contains("widget/w"),
        "{table}"
    );
    // Quiet when nothing changes: no write for two seconds.
    let rv = api.get("w").await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api.get("w").await.unwrap().resource_version(),
        rv,
        "idle controller wrote"
    );
    // Delete: the finalizer is released and the object goes.
    api.delete("w", &DeleteParams::default()).await.unwrap();
    eventually("widget gone", || async {
        api.get_opt("w").await.unwrap().is_none()
    })
    .await;
    // Admin endpoint.
    let get = |path: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                &format!("http://{admin}{path}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(get("/healthz").ends_with("\n200"));
    assert!(get("/readyz").ends_with("\n200"));
    let m = get("/metrics");
    assert!(
        m.contains("controller_runtime_reconcile_total{controller=\"widget\",result=\"success\"}"),
        "{m}"
    );
    assert!(
        m.contains("controller_runtime_reconcile_time_seconds_count{controller=\"widget\"}"),
        "{m}"
    );
    ctrl.abort();
}

/// Two candidates elect through a Lease: exactly one leads; when it stops renewing the other
/// takes over after the lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_lease_election_fails_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let s = Server::start();
    let client = s.client().await;
    let api: Api<Lease> = Api::namespaced(client, "default");
    let d = Duration::from_secs(2);
    let a = rdd_kit::lease::elect(api.clone(), "ctrl".into(), "a".into(), d);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = rdd_kit::lease::elect(api.clone(), "ctrl".into(), "b".into(), d);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(*a.borrow() && !*b.borrow(), "a leads, b waits");
    }
    // a stops (its receiver is dropped, so its loop ends) and b takes over.
    drop(a);
    eventually("b leads", || async { *b.borrow() }).await;
    let holder = api
        .get("ctrl")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_eq!(holder, "b");
}

/// The kit's webhook server over real HTTPS: an AdmissionReview in, a review out, with a JSON
/// patch for a mutation and a denial with its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_webhook_server_answers_admission_reviews_over_https() {
    use base64::Engine;
    use kube::core::admission::AdmissionResponse;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, cert.pem()).unwrap();
    let routes = rdd_kit::webhook::Routes::default().handle("/mutate", |req| {
        let labels = req
            .object
            .as_ref()
            .and_then(|o| o.metadata.labels.clone())
            .unwrap_or_default();
        if labels.contains_key("forbidden") {
            return AdmissionResponse::from(req).deny("label forbidden is not allowed");
        }
        let patch: json_patch::Patch = serde_json::from_value(
            json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]),
        )
        .unwrap();
        AdmissionResponse::from(req).with_patch(patch).unwrap()
    });
    let addr = rdd_kit::webhook::serve(
        "127.0.0.1:0".parse().unwrap(),
        &cert.pem(),
        &key.serialize_pem(),
        routes,
    )
    .await
    .unwrap();
    let post = |labels: serde_json::Value| {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "r-1", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"}, "operation": "CREATE",
                "userInfo": {"username": "u"}, "dryRun": false,
                "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": labels}}}});
        let out = std::process::Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(&ca)
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
                &format!("https://127.0.0.1:{}/mutate", addr.port()),
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
    };
    let ok = post(json!({}));

    assert_eq!(ok["response"]["uid"], "r-1");
    assert_eq!(ok["response"]["allowed"], true);
    assert_eq!(ok["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(ok["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: serde_json::Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(patch[0]["value"]["mutated"], "yes");
    let denied = post(json!({"forbidden": "x"}));
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(
        denied["response"]["status"]["message"],
        "label forbidden is not allowed"
    );
}

/// Lets a test run a competing write just before the first PATCH a client sends, so the kit's
/// conflict handling meets a real 409/422 from the server.
#[derive(Clone)]
struct Interfere {
    write: Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
    fired: Arc<std::sync::atomic::AtomicBool>,
    patches: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S> tower::Layer<S> for Interfere {
    type Service = InterfereSvc<S>;
    fn layer(&self, inner: S) -> InterfereSvc<S> {
        InterfereSvc {
            inner,
            cfg: self.clone(),
        }
    }
}

struct InterfereSvc<S> {
    inner: S,
    cfg: Interfere,
}

impl<S, B> tower::Service<http::Request<B>> for InterfereSvc<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use std::sync::atomic::Ordering;
        let is_patch = req.method() == http::Method::PATCH;
        if is_patch {
            self.cfg.patches.fetch_add(1, Ordering::SeqCst);
        }
        if is_patch && !self.cfg.fired.swap(true, Ordering::SeqCst) {
            // The competing write completes before our request exists at all.
            let write = self.cfg.write.clone();
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(write()));
        }
        self.inner.call(req)
    }
}

async fn interfering_client(
    server: &Server,
    write: Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
) -> (kube::Client, Arc<std::sync::atomic::AtomicUsize>) {
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let patches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = Interfere {
        write,
        fired: Default::default(),
        patches: patches.clone(),
    };
    let client = kube::client::ClientBuilder::try_from(cfg)
        .unwrap()
        .with_layer(&layer)
        .build();
    (client, patches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_r_eng_i2_s10_conflicting_write_is_retried_from_a_fresh_read() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let server = Server::start();
    let plain = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(plain.clone(), "default");
    let cm =
        serde_json::from_value(json!({"metadata": {"name": "c", "finalizers": ["x.io/mine"]}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    // ensure: another writer changes the object between our read and our write.
    let other = cms.clone();
    let write: Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync> =
        Arc::new(move || {
            let other = other.clone();
            Box::pin(async move {
                let p = json!({"metadata": {"labels": {"competitor": "yes"}}});
                other
                    .patch("c", &PatchParams::default(), &Patch::Merge(&p))
                    .await
                    .unwrap();
            })
        });
    let (client, patches) = interfering_client(&server, write).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    assert!(finalizer::ensure(&api, "c", "x.io/ours").await.unwrap());
    assert_eq!(
        patches.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one refused write, one retry"
    );
    let now = cms.get("c").await.unwrap();
    assert_eq!(now.finalizers(), ["x.io/mine", "x.io/ours"]);
    assert_eq!(
        now.labels().get("competitor").map(String::as_str),
        Some("yes"),
        "the competing write survives"
    );

    // remove: a foreign finalizer is inserted in front of ours meanwhile; only ours goes.
    let other = cms.clone();
    let write: Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync> = Arc::new(
        move || {
            let other = other.clone();
            Box::pin(async move {
                let p = json!([{"op": "add", "path": "/metadata/finalizers/0", "value": "x.io/foreign"}]);
                let p: json_patch::Patch = serde_json::from_value(p).unwrap();
                other
                    .patch("c", &PatchParams::default(), &Patch::Json::<()>(p))
                    .await
                    .unwrap();
            })
        },
    );
    let (client, patches) = interfering_client(&server, write).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    finalizer::remove(&api, "c", "x.io/ours").await.unwrap();
    assert_eq!(patches.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        cms.get("c").await.unwrap().finalizers(),
        ["x.io/foreign", "x.io/mine"]
    );
}
