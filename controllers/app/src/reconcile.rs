//! The App reconcile (controllers.md §2). One action per pass; a pass that acts on an object
//! this controller does not watch (ConfigMaps, Namespace) ends with "requeue now" (R-APP-I2).
//!
//! Deletion path (App has a deletionTimestamp), §2.3:
//!
//! | observed                                   | action                                             |
//! |--------------------------------------------|----------------------------------------------------|
//! | LimaVM `rd` exists                         | drop `owned-by-App` (also when terminating, R-APP-I1); delete it unless terminating; requeue 2 s |
//! | input ConfigMap `rd` exists                | delete it (errors abort teardown, R-APP-I4)         |
//! | `rd-template` lingers                      | drop its owned finalizer, delete it (R-APP-S8)      |
//! | NS exists and is controlled by this App    | delete it                                          |
//! | nothing left                               | remove `rdd.rancherdesktop.io/cleanup`              |
//!
//! Normal path, §2.4:
//!
//! | observed                                          | action                                      |
//! |---------------------------------------------------|---------------------------------------------|
//! | App gone                                          | nothing                                     |
//! | no cleanup finalizer                              | add it                                      |
//! | NS missing                                        | create it (owner App), continue             |
//! | LimaVM terminating                                | drop `owned-by-App`, requeue 2 s (R-APP-D1)  |
//! | Kubernetes wanted, no port / not wanted, port     | choose (7441+index, else free) / reset port  |
//! | LimaVM missing                                    | render; create or overwrite `rd` (R-APP-S7); create LimaVM |
//! | LimaVM exists, input `rd` still there             | delete `rd`; requeue now                    |
//! | LimaVM running, App not                           | merge-patch `spec.running=false` only (R-APP-I5) |
//! | template copy differs from the rendering          | merge-patch `data.template`; requeue now    |
//! | LimaVM stopped, App running                       | merge-patch `spec.running=true`             |
//! | otherwise                                         | mirror Created/Running, derive ContainerEngineReady and Settled; write only on change (R-APP-D3) |

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use rdd_api::app::App;
use rdd_api::limavm::{LimaVM, LimaVMSpec, TemplateRef};
use rdd_api::names;
use rdd_kit::conditions::{self, Condition, Desired};
use rdd_process::instance::Instance;
use serde_json::json;

use crate::Error;
use crate::settled::{self, Inputs};
use crate::template;

/// The App's VM and its input ConfigMap.
pub const VM: &str = "rd";
pub const INPUT: &str = "rd";
/// Requeue while waiting for the LimaVM teardown.
pub const TEARDOWN_POLL: Duration = Duration::from_secs(2);
/// Kubernetes port base (plus the instance index).
pub const KUBERNETES_PORT_BASE: u32 = 7441;
/// The condition types this controller owns on the App.
pub const OWN_TYPES: [&str; 4] = ["Created", "Running", "ContainerEngineReady", "Settled"];

pub struct Ctx {
    pub client: Client,
    pub instance: Instance,
    pub home: PathBuf,
    pub recorder: rdd_kit::events::Recorder,
    pub applier: rdd_kit::apply::Applier,
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// NS of resources.md §0.3.
pub fn namespace_of(app: &App) -> String {
    if app.spec.namespace.is_empty() {
        "default".into()
    } else {
        app.spec.namespace.clone()
    }
}

pub async fn reconcile(obj: Arc<App>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let apps: Api<App> = Api::all(ctx.client.clone());
    // Uncached: this pass must see the previous pass's writes.
    let Some(app) = apps.get_opt(&obj.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if app.meta().deletion_timestamp.is_some() {
        return teardown(&app, &ctx).await;
    }
    if !app
        .finalizers()
        .iter()
        .any(|f| f == names::CLEANUP_FINALIZER)
    {
        rdd_kit::finalizer::ensure(&apps, &app.name_any(), names::CLEANUP_FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let ns = namespace_of(&app);
    ensure_namespace(&app, &ns, &ctx).await?;
    let vms: Api<LimaVM> = Api::namespaced(ctx.client.clone(), &ns);
    let vm = vms.get_opt(VM).await?;
    if let Some(vm) = &vm
        && vm.meta().deletion_timestamp.is_some()
    {
        rdd_kit::finalizer::remove(&vms, VM, &names::owned_by("App")).await?;
        return Ok(Action::requeue(TEARDOWN_POLL));
    }
    let port = app
        .status
        .as_ref()
        .and_then(|s| s.kubernetes_port)
        .unwrap_or(0);
    let want_k8s = app.spec.kubernetes.as_ref().is_some_and(|k| k.enabled);
    if want_k8s && port == 0 {
        let p = probe_port(KUBERNETES_PORT_BASE + ctx.instance.index);
        apply_status(&app, Some(p), own_conditions(&app), &ctx).await?;
        return Ok(Action::await_change());
    }
    if !want_k8s && port != 0 {
        apply_status(&app, None, own_conditions(&app), &ctx).await?;
        return Ok(Action::await_change());
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(vm) = vm else {
        create_vm(&app, &ns, port, &ctx).await?;
        return Ok(Action::await_change());
    };
    if cms.get_opt(INPUT).await?.is_some() {
        match cms.delete(INPUT, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::requeue(Duration::ZERO));
    }
    if vm.spec.running && !app.spec.running {
        propagate_running(&app, &vms, false, &ctx).await?;
        return Ok(Action::await_change());
    }
    let vm_status = vm.status.clone().unwrap_or_default();
    let mut template_up_to_date = true;
    if let Some(copy) = &vm_status.template_config_map
        && let Some(cm) = cms.get_opt(copy).await?
    {
        let desired = template::render(&app, &ctx.instance, &ctx.home, port)?;
        let stored = cm.data.as_ref().and_then(|d| d.get("template"));
        if stored.map(String::as_str) != Some(desired.as_str()) {
            cms.patch(
                copy,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"template": desired}})),
            )
            .await?;
            tracing::info!(configmap = %copy, "template updated");
            ctx.recorder
                .publish(
                    &app,
                    false,
                    "TemplateUpdated",
                    "UpdateTemplate",
                    &format!("Updated the template in ConfigMap {ns}/{copy}"),
                )
                .await;
            return Ok(Action::requeue(Duration::ZERO));
        }
        template_up_to_date = cm.resource_version() == vm_status.observed_template_resource_version;
    }
    if !vm.spec.running && app.spec.running {
        propagate_running(&app, &vms, true, &ctx).await?;
        return Ok(Action::await_change());
    }
    write_status(&app, &vm, template_up_to_date, &ctx).await
}

async fn ensure_namespace(app: &App, ns: &str, ctx: &Ctx) -> Result<(), Error> {
    let nss: Api<Namespace> = Api::all(ctx.client.clone());
    if nss.get_opt(ns).await?.is_some() {
        return Ok(());
    }
    let owner = app
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("App without a UID".into()))?;
    let n = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(ns.to_string()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        ..Default::default()
    };
    match nss.create(&post_params(), &n).await {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// `127.0.0.1:<base+index>` if it can be bound now, else a free port from the OS. (The port is
/// released before Lima binds it; §2.4 step 7 documents the window.)
pub fn probe_port(preferred: u32) -> i32 {
    if let Ok(p) = u16::try_from(preferred)
        && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
    {
        return p as i32;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port() as i32)
        .unwrap_or(0)
}

/// Render, write the input ConfigMap (overwriting a stale one, R-APP-S7), create the LimaVM.
/// A failure between the two leaves only `rd`, which the next pass overwrites or the teardown
/// deletes.
async fn create_vm(app: &App, ns: &str, port: i32, ctx: &Ctx) -> Result<(), Error> {
    let rendered = template::render(app, &ctx.instance, &ctx.home, port)?;
    let owner = app
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("App without a UID".into()))?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    match cms.get_opt(INPUT).await? {
        None => {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(INPUT.into()),
                    namespace: Some(ns.into()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                data: Some([("template".to_string(), rendered)].into()),
                ..Default::default()
            };
            match cms.create(&post_params(), &cm).await {
                Ok(_) => {}
                Err(e) if already_exists(&e) => {
                    return Err(Error::Retry("input ConfigMap appeared meanwhile".into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Some(existing) => {
            if existing.data.as_ref().and_then(|d| d.get("template")) != Some(&rendered) {
                tracing::info!("overwriting a stale input ConfigMap");
                cms.patch(
                    INPUT,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"ownerReferences": [owner]}, "data": {"template": rendered}})),
                )
                .await?;
            }
        }
    }
    let mut vm = LimaVM::new(
        VM,
        LimaVMSpec {
            template_ref: TemplateRef {
                name: INPUT.into(),
                namespace: Some(ns.into()),
            },
            running: app.spec.running,
        },
    );
    vm.metadata.namespace = Some(ns.into());
    vm.metadata.finalizers = Some(vec![names::owned_by("App")]);
    vm.metadata.owner_references = Some(vec![owner]);
    let vms: Api<LimaVM> = Api::namespaced(ctx.client.clone(), ns);
    match vms.create(&post_params(), &vm).await {
        Ok(_) => {}
        Err(e) if already_exists(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    ctx.recorder
        .publish(
            app,
            false,
            "LimaVMCreated",
            "CreateLimaVM",
            &format!("Created LimaVM {ns}/{VM}"),
        )
        .await;
    Ok(())
}

/// R-APP-I5: a merge patch of `spec.running` only; a conflict (or any error) is returned and
/// the pass is retried with backoff.
async fn propagate_running(
    app: &App,
    vms: &Api<LimaVM>,
    running: bool,
    ctx: &Ctx,
) -> Result<(), Error> {
    vms.patch(
        VM,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"running": running}})),
    )
    .await?;
    ctx.recorder
        .publish(
            app,
            false,
            "RunningPropagated",
            "SetRunning",
            &format!("Set LimaVM {VM} spec.running={running}"),
        )
        .await;
    Ok(())
}

/// The conditions of our types as they are on the App now.
fn own_conditions(app: &App) -> Vec<Condition> {
    app.status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| OWN_TYPES.contains(&c.type_.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Server-side apply of everything this controller owns in the App status: the Kubernetes
/// port and its conditions (the list-map keeps other writers' conditions).
async fn apply_status(
    app: &App,
    port: Option<i32>,
    own: Vec<Condition>,
    ctx: &Ctx,
) -> Result<(), Error> {
    let apps: Api<App> = Api::all(ctx.client.clone());
    let mut status = json!({"conditions": own});
    if let Some(p) = port.filter(|p| *p != 0) {
        status["kubernetesPort"] = json!(p);
    }
    ctx.applier.status(&apps, &app.name_any(), status).await?;
    Ok(())
}

/// Which mirror kinds and whether Kubernetes are enabled, from the discovery ConfigMap
/// (§2.6): missing → nothing enabled; unreadable → everything (never settle early).
pub async fn enabled(client: &Client) -> (Vec<&'static str>, bool) {
    let all_kinds = vec!["ContainersSynced", "ImagesSynced", "VolumesSynced"];
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), rdd_kit::discovery::NAMESPACE);
    let cm = match cms.get_opt(rdd_kit::discovery::NAME).await {
        Ok(Some(cm)) => cm,
        Ok(None) => return (vec![], false),
        Err(e) => {
            tracing::warn!(error = %e, "reading the discovery ConfigMap; assuming every controller is enabled");
            return (all_kinds, true);
        }
    };
    let mut names: Vec<String> = vec![];
    for v in cm.data.unwrap_or_default().values() {
        if let Ok(entry) = serde_json::from_str::<serde_json::Value>(v)
            && let Some(list) = entry.get("enabledControllers").and_then(|l| l.as_array())
        {
            names.extend(list.iter().filter_map(|n| n.as_str().map(String::from)));
        }
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    // Each mirror process names its kind (container, image, volume), so Settled waits for the
    // kinds that run; a bare `engine` (one process mirroring everything, as in Go) means all.
    let per_kind = has("container") || has("image") || has("volume");
    let kinds = if has("engine") && !per_kind {
        all_kinds
    } else {
        [
            ("container", "ContainersSynced"),
            ("image", "ImagesSynced"),
            ("volume", "VolumesSynced"),
        ]
        .into_iter()
        .filter(|(n, _)| has(n))
        .map(|(_, t)| t)
        .collect()
    };
    (kinds, has("kubernetes"))
}

/// §2.4 step 13: mirror, derive, write only on change; inputs and stamp from one generation.
async fn write_status(
    app: &App,
    vm: &LimaVM,
    template_up_to_date: bool,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let (kinds, kubernetes_enabled) = enabled(&ctx.client).await;
    let apps: Api<App> = Api::all(ctx.client.clone());
    let Some(fresh) = apps.get_opt(&app.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let generation = app.metadata.generation.unwrap_or(0);
    if fresh.metadata.generation != app.metadata.generation || fresh.spec != app.spec {
        // G-3: never stamp a newer generation on a decision made from an older one.
        return Ok(Action::requeue(Duration::ZERO));
    }
    let mut conds = fresh.status.clone().unwrap_or_default().conditions;
    let before = conds.clone();
    let vm_conds = vm.status.clone().unwrap_or_default().conditions;
    for t in ["Created", "Running"] {
        if let Some(c) = conditions::find(&vm_conds, t) {
            let d = Desired {
                type_: t,
                status: &c.status,
                reason: &c.reason,
                message: &c.message,
                observed_generation: Some(generation),
            };
            conditions::set(&mut conds, &d, &c.last_transition_time);
        }
    }
    let synced: Vec<Option<&Condition>> =
        kinds.iter().map(|k| conditions::find(&conds, k)).collect();
    match settled::engine_ready(&synced) {
        Some(e) => {
            let d = Desired {
                type_: "ContainerEngineReady",
                status: e.status,
                reason: &e.reason,
                message: &e.message,
                observed_generation: Some(e.observed_generation),
            };
            conditions::set(&mut conds, &d, &conditions::now());
        }
        None => conds.retain(|c| c.type_ != "ContainerEngineReady"),
    }
    let decision = settled::settled(&Inputs {
        desired: app.spec.running,
        generation,
        template_up_to_date,
        running: conditions::find(&conds, "Running"),
        engine: conditions::find(&conds, "ContainerEngineReady"),
        kubernetes: conditions::find(&conds, "KubernetesReady"),
        engine_enabled: !kinds.is_empty(),
        kubernetes_enabled,
        kubernetes_wanted: app.spec.kubernetes.as_ref().is_some_and(|k| k.enabled),
    });
    let d = Desired {
        type_: "Settled",
        status: decision.status,
        reason: &decision.reason,
        message: &decision.message,
        observed_generation: Some(decision.observed_generation),
    };
    conditions::set(&mut conds, &d, &conditions::now());
    if conds == before {
        return Ok(Action::await_change());
    }
    let own: Vec<Condition> = conds
        .into_iter()
        .filter(|c| OWN_TYPES.contains(&c.type_.as_str()))
        .collect();
    let port = fresh.status.as_ref().and_then(|s| s.kubernetes_port);
    apply_status(&fresh, port, own, ctx).await?;
    Ok(Action::await_change())
}

/// §2.3: never deadlocks (R-APP-I1), aborts on any error but NotFound (R-APP-I4), removes the
/// copies the LimaVM's own cleanup may have left (R-APP-S8).
async fn teardown(app: &App, ctx: &Ctx) -> Result<Action, Error> {
    if !app
        .finalizers()
        .iter()
        .any(|f| f == names::CLEANUP_FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let ns = namespace_of(app);
    let vms: Api<LimaVM> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(vm) = vms.get_opt(VM).await? {
        rdd_kit::finalizer::remove(&vms, VM, &names::owned_by("App")).await?;
        if vm.meta().deletion_timestamp.is_none() {
            match vms.delete(VM, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            ctx.recorder
                .publish(
                    app,
                    false,
                    "TeardownStarted",
                    "DeleteLimaVM",
                    &format!("Deleting LimaVM {ns}/{VM}"),
                )
                .await;
        }
        return Ok(Action::requeue(TEARDOWN_POLL));
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    if cms.get_opt(INPUT).await?.is_some() {
        match cms.delete(INPUT, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let copy = names::template_copy_name(VM);
    if let Some(cm) = cms.get_opt(&copy).await? {
        for f in cm
            .finalizers()
            .iter()
            .filter(|f| f.starts_with(names::OWNED_BY_PREFIX))
        {
            rdd_kit::finalizer::remove(&cms, &copy, f).await?;
        }
        match cms.delete(&copy, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let nss: Api<Namespace> = Api::all(ctx.client.clone());
    if let Some(n) = nss.get_opt(&ns).await? {
        let ours = n
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == app.uid().as_ref());
        if ours && n.metadata.deletion_timestamp.is_none() {
            match nss.delete(&ns, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    ctx.recorder
        .publish(
            app,
            false,
            "TeardownFinished",
            "Teardown",
            "LimaVM, ConfigMaps and namespace removed",
        )
        .await;
    let apps: Api<App> = Api::all(ctx.client.clone());
    rdd_kit::finalizer::remove(&apps, &app.name_any(), names::CLEANUP_FINALIZER).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Calls = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A fake API server: `respond(method, path)` gives (status, body); every call is recorded
    /// with its body.
    fn fake(
        respond: impl Fn(&str, &str) -> (u16, serde_json::Value) + Send + Sync + 'static,
    ) -> (Client, Calls) {
        let calls: Calls = Default::default();
        let c2 = calls.clone();
        let respond = Arc::new(respond);
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let calls = c2.clone();
            let respond = respond.clone();
            async move {
                use http_body_util::BodyExt;
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                calls.lock().unwrap().push((
                    method.clone(),
                    path.clone(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let (code, v) = respond(&method, &path);
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(v.to_string())))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        (Client::new(svc, "default"), calls)
    }

    fn ctx(client: Client) -> Arc<Ctx> {
        Arc::new(Ctx {
            recorder: rdd_kit::events::Recorder::new(client.clone(), "test"),
            client,
            instance: Instance::new("t", "/nonexistent".into()),
            home: "/nonexistent".into(),
            applier: rdd_kit::apply::Applier::new("test"),
        })
    }

    fn app(deleting: bool) -> serde_json::Value {
        let mut a = json!({"apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
            "metadata": {"name": "app", "uid": "u-app", "generation": 1, "resourceVersion": "5",
                         "finalizers": [names::CLEANUP_FINALIZER]},
            "spec": {"running": false, "namespace": "default"}});
        if deleting {
            a["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        a
    }

    fn terminating_vm() -> serde_json::Value {
        json!({"apiVersion": "lima.rancherdesktop.io/v1alpha1", "kind": "LimaVM",
            "metadata": {"name": "rd", "namespace": "default", "uid": "u-vm", "resourceVersion": "7",
                "deletionTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": [names::CLEANUP_FINALIZER, names::owned_by("App")]},
            "spec": {"templateRef": {"name": "rd"}, "running": false}})
    }

    fn not_found() -> (u16, serde_json::Value) {
        (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    }

    const APP: &str = "/apis/app.rancherdesktop.io/v1alpha1/apps/app";
    const LIMAVM: &str = "/apis/lima.rancherdesktop.io/v1alpha1/namespaces/default/limavms/rd";
    const INPUT_CM: &str = "/api/v1/namespaces/default/configmaps/rd";

    fn wrote(calls: &Calls, method: &str, path: &str) -> Vec<String> {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    fn obj<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<K> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[tokio::test]
    async fn r_app_i1_teardown_strips_the_owned_finalizer_of_a_terminating_limavm() {
        let (client, calls) = fake(|m, p| match (m, p) {
            ("GET", APP) => (200, app(true)),
            ("GET", LIMAVM) | ("PATCH", LIMAVM) => (200, terminating_vm()),
            _ => not_found(),
        });
        let action = reconcile(obj(app(true)), ctx(client)).await.unwrap();
        assert_eq!(action, Action::requeue(TEARDOWN_POLL));
        let patches = wrote(&calls, "PATCH", LIMAVM);
        assert_eq!(patches.len(), 1);
        assert!(
            patches[0].contains("remove") && patches[0].contains("/metadata/finalizers/1"),
            "{}",
            patches[0]
        );
        assert!(
            wrote(&calls, "DELETE", LIMAVM).is_empty(),
            "no second delete of a terminating LimaVM"
        );
    }

    #[tokio::test]
    async fn r_app_d1_normal_path_strips_the_owned_finalizer_and_waits() {
        let (client, calls) = fake(|m, p| match (m, p) {
            ("GET", APP) => (200, app(false)),
            ("GET", "/api/v1/namespaces/default") => (
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
            ),
            ("GET", LIMAVM) | ("PATCH", LIMAVM) => (200, terminating_vm()),
            _ => not_found(),
        });
        let action = reconcile(obj(app(false)), ctx(client)).await.unwrap();
        assert_eq!(action, Action::requeue(TEARDOWN_POLL));
        assert_eq!(wrote(&calls, "PATCH", LIMAVM).len(), 1);
    }

    #[tokio::test]
    async fn r_app_i4_a_transient_error_reading_the_input_keeps_the_app_finalizer() {
        let (client, calls) = fake(|m, p| match (m, p) {
            ("GET", APP) => (200, app(true)),
            ("GET", INPUT_CM) => (
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "transient"}),
            ),
            _ => not_found(),
        });
        assert!(reconcile(obj(app(true)), ctx(client)).await.is_err());
        assert!(
            wrote(&calls, "PATCH", APP).is_empty(),
            "the App keeps its finalizer"
        );
    }

    #[tokio::test]
    async fn r_app_i2_the_pass_deleting_the_input_configmap_requeues_now() {
        let live_vm = json!({"apiVersion": "lima.rancherdesktop.io/v1alpha1", "kind": "LimaVM",
            "metadata": {"name": "rd", "namespace": "default", "uid": "u-vm", "resourceVersion": "7"},
            "spec": {"templateRef": {"name": "rd"}, "running": false}});
        let (client, calls) = fake(move |m, p| match (m, p) {
            ("GET", APP) => (200, app(false)),
            ("GET", "/api/v1/namespaces/default") => (
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
            ),
            ("GET", LIMAVM) => (200, live_vm.clone()),
            ("GET", INPUT_CM) | ("DELETE", INPUT_CM) => (
                200,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rd", "namespace": "default"}}),
            ),
            _ => not_found(),
        });
        let action = reconcile(obj(app(false)), ctx(client)).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::ZERO));
        assert_eq!(wrote(&calls, "DELETE", INPUT_CM).len(), 1);
    }

    #[tokio::test]
    async fn g3_a_newer_generation_is_never_stamped_on_an_older_decision() {
        let live_vm = json!({"apiVersion": "lima.rancherdesktop.io/v1alpha1", "kind": "LimaVM",
            "metadata": {"name": "rd", "namespace": "default", "uid": "u-vm", "resourceVersion": "7"},
            "spec": {"templateRef": {"name": "rd"}, "running": false},
            "status": {"conditions": [{"type": "Running", "status": "False", "reason": "Stopped",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let gets = Arc::new(Mutex::new(0));
        let (client, calls) = fake(move |m, p| match (m, p) {
            ("GET", APP) => {
                let mut n = gets.lock().unwrap();
                *n += 1;
                let mut a = app(false);
                if *n > 1 {
                    // Someone changed the spec between the pass's read and its status write.
                    a["metadata"]["generation"] = json!(2);
                    a["spec"]["running"] = json!(true);
                }
                (200, a)
            }
            ("GET", "/api/v1/namespaces/default") => (
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
            ),
            ("GET", LIMAVM) => (200, live_vm.clone()),
            _ => not_found(),
        });
        let action = reconcile(obj(app(false)), ctx(client)).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::ZERO));
        assert!(
            !calls
                .lock()
                .unwrap()
                .iter()
                .any(|(m, p, _)| m == "PATCH" && p.starts_with(APP)),
            "no status write from a stale decision"
        );
    }

    #[test]
    fn kubernetes_port_prefers_the_instance_port_and_falls_back_to_a_free_one() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().port() as u32;
        let p = probe_port(busy);
        assert!(
            p > 0 && p as u32 != busy,
            "a taken port falls back to a free one"
        );
        drop(held);
        assert_eq!(
            probe_port(busy),
            busy as i32,
            "a free preferred port is used"
        );
    }
}
