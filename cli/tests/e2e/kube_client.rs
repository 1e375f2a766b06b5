//! kube-rs against the server: watcher and reflector across a restart, a Controller with
//! server-side-applied status and the finalizer helper, and Lease-based leader election.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use serde_json::json;

use crate::harness::{Server, fixture};

fn cm(name: &str, v: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("v".to_string(), v.to_string())].into()),
        ..Default::default()
    }
}

async fn next_matching<S, F>(stream: &mut S, what: &str, mut f: F)
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
    F: FnMut(&Event<ConfigMap>) -> bool,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        match ev {
            Some(Ok(e)) if f(&e) => return,
            Some(_) => continue,
            None => panic!("stream ended waiting for {what}"),
        }
    }
}

async fn watcher_sees_changes_and_restart(initial: watcher::InitialListStrategy) {
    let mut s = Server::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("before", "0"))
        .await
        .unwrap();
    let cfg = watcher::Config {
        initial_list_strategy: initial,
        ..Default::default()
    };
    let mut stream = watcher::watcher(api.clone(), cfg).boxed();
    next_matching(&mut stream, "InitDone", |e| matches!(e, Event::InitDone)).await;
    api.create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    next_matching(
        &mut stream,
        "create of a",
        |e| matches!(e, Event::Apply(o) if o.metadata.name.as_deref() == Some("a")),
    )
    .await;
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    next_matching(&mut stream, "update of a", |e| matches!(e, Event::Apply(o) if o.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some("2"))).await;
    api.delete("a", &DeleteParams::default()).await.unwrap();
    next_matching(
        &mut stream,
        "delete of a",
        |e| matches!(e, Event::Delete(o) if o.metadata.name.as_deref() == Some("a")),
    )
    .await;
    // A restart ends the watch; the watcher resumes and sees what happens after.
    s.restart();
    let client2 = s.client().await;
    Api::<ConfigMap>::namespaced(client2, "default")
        .create(&PostParams::default(), &cm("after", "3"))
        .await
        .unwrap();
    next_matching(&mut stream, "create after restart", |e| match e {
        Event::Apply(o) | Event::InitApply(o) => o.metadata.name.as_deref() == Some("after"),
        _ => false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_kube_watcher_list_watch_across_restart() {
    watcher_sees_changes_and_restart(watcher::InitialListStrategy::ListWatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_kube_watcher_streaming_list_across_restart() {
    watcher_sees_changes_and_restart(watcher::InitialListStrategy::StreamingList).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_kube_reflector_store_follows_server() {
    let s = Server::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher::watcher(api.clone(), watcher::Config::default()),
    )
    .applied_objects();
    let handle = tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("r{i}"), "x"))
            .await
            .unwrap();
    }
    api.delete("r0", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .filter(|n| n.starts_with('r'))
            .collect();
        if names.len() == 4 && !names.contains(&"r0".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store never converged: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.abort();
}

#[derive(
    kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    color: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, Default, schemars::JsonSchema)]
struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
}

async fn install_crd(client: &kube::Client) {
    let text = std::fs::read_to_string(fixture("widgets-crd.yaml")).unwrap();
    let crd: CustomResourceDefinition =
        serde_json::from_value(serde_json::to_value(serde_yaml_value(&text)).unwrap()).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd).await.unwrap();
    let cond = kube::runtime::conditions::is_crd_established();
    tokio::time::timeout(
        Duration::from_secs(10),
        kube::runtime::wait::await_condition(api, "widgets.test.rdd.io", cond),
    )
    .await
    .unwrap()
    .unwrap();
}

fn serde_yaml_value(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}

const FINALIZER: &str = "widgets.test.rdd.io/cleanup";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_kube_controller_ssa_status_and_finalizer() {
    let s = Server::start();
    let client = s.client().await;
    install_crd(&client).await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let cleaned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ctx = Arc::new((client.clone(), cleaned.clone()));
    async fn reconcile(
        w: Arc<Widget>,
        ctx: Arc<(kube::Client, Arc<std::sync::atomic::AtomicUsize>)>,
    ) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
        let api: Api<Widget> = Api::namespaced(ctx.0.clone(), "default");
        let status_api = api.clone();
        let cleaned = ctx.1.clone();
        finalizer(&api, FINALIZER, w, |ev| async move {
            match ev {
                FinalizerEvent::Apply(w) => {
                    let name = w.metadata.name.clone().unwrap_or_default();
                    let st = json!({"apiVersion": "test.rdd.io/v1", "kind": "Widget", "status": {"phase": format!("size-{}", w.spec.size)}});
                    status_api.patch_status(&name, &PatchParams::apply("widget-controller").force(), &Patch::Apply(st)).await?;
                    Ok(Action::await_change())
                }
                FinalizerEvent::Cleanup(_) => {
                    cleaned.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(Action::await_change())
                }
            }
        })
        .await
    }
    fn error_policy(
        _: Arc<Widget>,
        _: &kube::runtime::finalizer::Error<kube::Error>,
        _: Arc<(kube::Client, Arc<std::sync::atomic::AtomicUsize>)>,
    ) -> Action {
        Action::requeue(Duration::from_millis(200))
    }
    let ctrl = tokio::spawn(
        Controller::new(api.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {}),
    );
    api.create(
        &PostParams::default(),
        &Widget::new(
            "w1",
            WidgetSpec {
                size: 4,
                color: None,
            },
        ),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let w = api.get("w1").await.unwrap();
        let phase = w.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("size-4")
            && w.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
        {
            assert_eq!(
                w.metadata.generation,
                Some(1),
                "status apply must not bump generation"
            );
            assert_eq!(
                w.spec.color.as_deref(),
                Some("red"),
                "schema default applied"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "controller never reconciled: {w:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Spec change bumps generation and re-reconciles.
    api.patch(
        "w1",
        &PatchParams::apply("user").force(),
        &Patch::Apply(
            json!({"apiVersion": "test.rdd.io/v1", "kind": "Widget", "spec": {"size": 7}}),
        ),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let w = api.get("w1").await.unwrap();
        if w.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("size-7") {
            assert_eq!(w.metadata.generation, Some(2));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.delete("w1", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match api.get_opt("w1").await.unwrap() {
            None => break,
            Some(w) => assert!(w.metadata.deletion_timestamp.is_some()),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "finalizer never released the widget"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cleaned.load(std::sync::atomic::Ordering::SeqCst), 1);
    ctrl.abort();
}

/// One round of a simple lease election: take the lease if free or expired, renew if ours.
async fn try_lead(api: &Api<Lease>, me: &str, ttl: i32) -> bool {
    let now = k8s_openapi::jiff::Timestamp::now();
    match api.get_opt("leader").await.unwrap() {
        None => {
            let l = Lease {
                metadata: ObjectMeta {
                    name: Some("leader".into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.into()),
                    lease_duration_seconds: Some(ttl),
                    renew_time: Some(MicroTime(now)),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &l).await.is_ok()
        }
        Some(mut l) => {
            let spec = l.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let expired = spec
                .renew_time
                .map(|t| {
                    t.0 + k8s_openapi::jiff::SignedDuration::from_secs(
                        spec.lease_duration_seconds.unwrap_or(ttl) as i64,
                    ) < now
                })
                .unwrap_or(true);
            if holder != me && !expired {
                return false;
            }
            l.spec = Some(LeaseSpec {
                holder_identity: Some(me.into()),
                lease_duration_seconds: Some(ttl),
                renew_time: Some(MicroTime(now)),
                ..spec
            });
            // replace carries the resourceVersion: a concurrent winner makes this a 409.
            api.replace("leader", &PostParams::default(), &l)
                .await
                .is_ok()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_kube_lease_election_one_leader() {
    let s = Server::start();
    let client = s.client().await;
    let api: Api<Lease> = Api::namespaced(client, "default");
    let mut leaders = 0;
    for _ in 0..20 {
        let (a, b) = tokio::join!(try_lead(&api, "a", 2), try_lead(&api, "b", 2));
        let holder = api
            .get("leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .unwrap();
        // Whoever succeeded is the holder; never both in one round after the first.
        if a && b {
            panic!("both candidates believe they lead");
        }
        if a {
            assert_eq!(holder, "a");
        }
        if b {
            assert_eq!(holder, "b");
        }
        leaders += (a || b) as i32;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leaders > 0);
    let first = api
        .get("leader")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let other = if first == "a" { "b" } else { "a" };
    assert!(
        !try_lead(&api, other, 2).await,
        "the other candidate must not take a live lease"
    );
    // The leader stops renewing: after the lease duration the other takes over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(try_lead(&api, other, 2).await);
    let t = api
        .get("leader")
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap();
    let json = serde_json::to_string(&t).unwrap();
    assert!(json.contains('.'), "MicroTime keeps microseconds: {json}");
}
