//! The Container reconciler: actions requested through the annotation and API-side deletion
//! forwarding. Mirrors themselves are written by the engine session (`engine.rs`); this
//! reconciler only wakes for the annotation, the deletion timestamp, finalizers or generation
//! (the kit's predicates), never for status writes, so an idle mirror costs nothing (R-ENG-D1).
//!
//! One row per observed state; each reconcile takes exactly one:
//!
//! | observed mirror | engine session | step |
//! |---|---|---|
//! | NS not known yet (process starting, App not seen), with an action annotation or deleting with our finalizer | any | wait (requeue in 5 s): the runner is not woken when the session learns NS, so a request pending at start-up (a `kill -9` mid-action) would otherwise wait for an unrelated change |
//! | outside the session's NS | any | none (not ours) |
//! | deleting, carries our finalizer, Namespace NS terminating or gone | any | strip our finalizer without a Docker call: deleting NS is not a request to remove every container (R-ENG-D2; `rdd_mirror::deletion`) |
//! | deleting, carries our finalizer | connected | remove the container in Docker (force; NotFound is success), then strip our finalizer (conflicts re-read, the Docker call is not repeated, R-ENG-S10) |
//! | deleting, carries our finalizer | not connected | wait (requeue in 5 s) |
//! | deleting, only foreign finalizers | any | report them (log); nothing of ours left (R-ENG-T8) |
//! | live, action annotation not a valid action | any | remove the annotation if unchanged; no `lastAction` |
//! | live, valid action annotation, not claimed | connected | claim it (write the claim annotation under the object's resourceVersion; a conflict re-reads), then dispatch per the matrix below, record `status.lastAction`, remove both annotations if unchanged |
//! | live, valid action annotation, claimed with the same value | connected | a pass claimed it and did not finish (the process died during the Docker call, or its writes failed): no Docker call; `lastAction` Succeeded when the observed state already satisfies the action, else Failed (interrupted); remove both annotations |
//! | live, valid action annotation | not connected | wait (requeue in 5 s) |
//! | live, no annotation | any | none: no API write, no Docker call (R-ENG-I1, R-ENG-D4) |
//!
//! Dispatch matrix (R-ENG-DOC4; controllers.md §4.9 in the annotation model). Rows: the requested
//! action; columns: the mirror's `status.status`; "–" = success without a Docker call.
//!
//! | action \ observed | running | paused | created | exited | dead | pausing | restarting | removing | unknown |
//! |---|---|---|---|---|---|---|---|---|---|
//! | `start` | – | unpause | start | start | start | start | start | start | start |
//! | `stop` | stop | stop | – | – | – | stop | stop | stop | stop |
//! | `pause` | pause | – | pause¹ | pause¹ | pause¹ | pause¹ | pause¹ | pause¹ | pause¹ |
//! | `unpause` | – | unpause | fail² | fail² | fail² | fail² | fail² | fail² | fail² |
//! | `restart` | restart | restart | restart | restart | restart | restart | restart | restart | restart |
//!
//! ¹ Docker refuses to pause a container that is not running; its error is recorded.
//! ² `cannot unpause container <id>: not running`, without a Docker call.
//!
//! Stop is satisfied by any stopped state (`created`, `exited`, `dead`), so a stop intent on a
//! stopped container makes no call; start is never sent to a paused container (Docker rejects
//! it). An action runs once: the annotation is consumed whether it succeeded or failed, and
//! nothing restarts a container that exits afterwards — that is Docker's restart policy's job
//! (R-ENG-D4).
//!
//! At most once: controllers.md §4.8 step 6 accepts that a crash between the Docker call and
//! the annotation's removal replays the action (a restart restarting twice). Issue 12 asks that
//! no Docker action runs twice, so the call is preceded by a claim — the
//! `containers.rancherdesktop.io/action-claimed` annotation set to the request's value with an
//! optimistic lock. Only the pass whose claim succeeded calls Docker; a pass that finds the
//! request already claimed (after a `kill -9`, or a stale cache copy) makes no call. The cost is
//! one API write per action; the price of a crash is an action reported as interrupted instead
//! of one run twice.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use rdd_api::containers::{
    ActionState, Container, ContainerAction, ContainerLastAction, ContainerStatusValue,
};
use rdd_kit::conditions::now;
use rdd_mirror::gateway::{Gateway, is_not_found};
use rdd_mirror::session::EngineState;
use rdd_mirror::{FINALIZER, is_api_status};
use rdd_proto::v1::{ContainerRef, RemoveContainerRequest, StopContainerRequest};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

/// The one-shot action annotation (resources.md §5.2.1).
pub const ACTION: &str = "containers.rancherdesktop.io/action";
/// Field manager of `status.lastAction` (merge patches, resources.md §7.4).
pub const ACTION_MANAGER: &str = "container-controller-actions";
/// Set to the action value by the pass that is about to call Docker for it (see above).
pub const CLAIM: &str = "containers.rancherdesktop.io/action-claimed";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Kit(#[from] rdd_kit::KitError),
    #[error("removing container in Docker: {0}")]
    Remove(tonic::Status),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Mirror(Box<rdd_mirror::MirrorError>),
}

/// What one reconcile does (the rows of the table above).
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    NotOurs,
    ForwardDelete,
    Wait,
    ReportForeign(Vec<String>),
    DropInvalid(String),
    Act(ContainerAction, String),
    Interrupted(ContainerAction, String),
    Nothing,
}

pub fn parse_action(raw: &str) -> Option<ContainerAction> {
    match raw {
        "start" => Some(ContainerAction::Start),
        "stop" => Some(ContainerAction::Stop),
        "pause" => Some(ContainerAction::Pause),
        "unpause" => Some(ContainerAction::Unpause),
        "restart" => Some(ContainerAction::Restart),
        _ => None,
    }
}

/// Choose the step for `c` as observed, given the session state.
pub fn decide(c: &Container, state: &EngineState) -> Step {
    let pending = c.annotations().contains_key(ACTION)
        || (c.metadata.deletion_timestamp.is_some()
            && c.finalizers().iter().any(|f| f == FINALIZER));
    if state.ns.is_none() && pending {
        return Step::Wait;
    }
    if state.ns.as_deref() != c.namespace().as_deref() {
        return Step::NotOurs;
    }
    let ours = c.finalizers().iter().any(|f| f == FINALIZER);
    if c.metadata.deletion_timestamp.is_some() {
        return match (ours, state.connected) {
            (true, true) => Step::ForwardDelete,
            (true, false) => Step::Wait,
            (false, _) if !c.finalizers().is_empty() => {
                Step::ReportForeign(c.finalizers().to_vec())
            }
            (false, _) => Step::Nothing,
        };
    }
    let Some(raw) = c.annotations().get(ACTION) else {
        return Step::Nothing;
    };
    match parse_action(raw) {
        None => Step::DropInvalid(raw.clone()),
        Some(_) if !state.connected => Step::Wait,
        Some(a) if c.annotations().get(CLAIM) == Some(raw) => Step::Interrupted(a, raw.clone()),
        Some(a) => Step::Act(a, raw.clone()),
    }
}

/// The Docker call an action needs, from the matrix above.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Call {
    None,
    Start,
    Stop,
    Pause,
    Unpause,
    Restart,
    FailNotRunning,
}

pub fn dispatch(action: ContainerAction, observed: ContainerStatusValue) -> Call {
    use ContainerAction as A;
    use ContainerStatusValue as S;
    match (action, observed) {
        (A::Start, S::Running) => Call::None,
        (A::Start, S::Paused) => Call::Unpause,
        (A::Start, _) => Call::Start,
        (A::Stop, S::Created | S::Exited | S::Dead) => Call::None,
        (A::Stop, _) => Call::Stop,
        (A::Pause, S::Paused) => Call::None,
        (A::Pause, _) => Call::Pause,
        (A::Unpause, S::Paused) => Call::Unpause,
        (A::Unpause, S::Running) => Call::None,
        (A::Unpause, _) => Call::FailNotRunning,
        (A::Restart, _) => Call::Restart,
    }
}

pub struct Ctx {
    pub client: Client,
    pub gateway: Gateway,
    pub state: watch::Receiver<EngineState>,
}

pub async fn reconcile(c: Arc<Container>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let state = ctx.state.borrow().clone();
    let step = decide(&c, &state);
    let name = c.name_any();
    let ns = c.namespace().unwrap_or_default();
    let api: Api<Container> = Api::namespaced(ctx.client.clone(), &ns);
    if matches!(step, Step::ForwardDelete | Step::Wait)
        && c.metadata.deletion_timestamp.is_some()
        && rdd_mirror::deletion::namespace_terminating(&ctx.client, &ns)
            .await
            .map_err(|e| ReconcileError::Mirror(Box::new(e)))?
    {
        tracing::info!("namespace terminating: mirror released without a Docker call");
        rdd_mirror::deletion::release_finalizer(&api, &c)
            .await
            .map_err(|e| ReconcileError::Mirror(Box::new(e)))?;
        return Ok(Action::await_change());
    }
    match step {
        Step::NotOurs | Step::Nothing => Ok(Action::await_change()),
        Step::Wait => Ok(Action::requeue(Duration::from_secs(5))),
        Step::ReportForeign(f) => {
            tracing::warn!(finalizers = ?f, "mirror held by finalizers that are not ours");
            Ok(Action::await_change())
        }
        Step::ForwardDelete => {
            let gw = ctx.gateway.clone();
            let id = name.clone();
            forward_delete(&api, &c, move || async move {
                let mut gw = gw;
                let req = RemoveContainerRequest {
                    id,
                    force: true,
                    volumes: false,
                };
                gw.remove_container(req)
                    .instrument(tracing::info_span!("gateway", call = "RemoveContainer"))
                    .await
                    .map(|_| ())
            })
            .await?;
            Ok(Action::await_change())
        }
        Step::DropInvalid(raw) => {
            tracing::warn!(value = %raw, "invalid action annotation dropped");
            remove_annotation(&api, &c, &raw).await?;
            Ok(Action::await_change())
        }
        Step::Interrupted(action, raw) => {
            finish_interrupted(&api, &name, action, &raw).await?;
            Ok(Action::await_change())
        }
        Step::Act(action, raw) => {
            let c = match claim(&api, &c, &raw).await? {
                Claim::Ours(c) => c,
                Claim::Gone => return Ok(Action::await_change()),
                Claim::Taken => {
                    finish_interrupted(&api, &name, action, &raw).await?;
                    return Ok(Action::await_change());
                }
            };
            let observed = c.status.as_ref().map(|s| s.status).unwrap_or_default();
            let call = dispatch(action, observed);
            let observed_at = now();
            let result = run_call(&ctx.gateway, &name, call).await;
            let completed_at = now();
            let last = ContainerLastAction {
                action,
                state: if result.is_ok() {
                    ActionState::Succeeded
                } else {
                    ActionState::Failed
                },
                error: result.err(),
                observed_at: Some(observed_at),
                completed_at: Some(completed_at),
            };
            tracing::info!(?action, ?call, state = ?last.state, error = ?last.error, "action done");
            if write_last_action(&api, &c, &last).await? {
                remove_annotation(&api, &c, &raw).await?;
            }
            Ok(Action::await_change())
        }
    }
}

enum Claim {
    /// This pass owns the request; the object as written.
    Ours(Box<Container>),
    /// The request was claimed before (by a pass that did not finish).
    Taken,
    /// The annotation no longer holds this request (consumed, replaced or the mirror is gone).
    Gone,
}

/// Claim the request `raw` before calling Docker (see the module documentation).
async fn claim(api: &Api<Container>, c: &Container, raw: &str) -> Result<Claim, ReconcileError> {
    let name = c.name_any();
    let mut cur = c.clone();
    for _ in 0..5 {
        let ann = cur.annotations();
        if ann.get(ACTION).map(String::as_str) != Some(raw) {
            return Ok(Claim::Gone);
        }
        if ann.get(CLAIM).map(String::as_str) == Some(raw) {
            return Ok(Claim::Taken);
        }
        let body = json!({"metadata": {
            "resourceVersion": cur.resource_version(),
            "annotations": {CLAIM: raw},
        }});
        let pp = PatchParams {
            field_manager: Some(ACTION_MANAGER.into()),
            ..Default::default()
        };
        match api.patch(&name, &pp, &Patch::Merge(body)).await {
            Ok(o) => return Ok(Claim::Ours(Box::new(o))),
            Err(e) if is_api_status(&e, 404) => return Ok(Claim::Gone),
            Err(e) if is_api_status(&e, 409) => match api.get_opt(&name).await? {
                Some(o) => cur = o,
                None => return Ok(Claim::Gone),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReconcileError::Conflict(format!(
        "claiming the action of {name}: conflicts persisted"
    )))
}

/// The outcome recorded for a claimed request whose pass did not finish: the call may or may not
/// have run, and is not repeated.
pub fn interrupted_outcome(
    action: ContainerAction,
    observed: ContainerStatusValue,
) -> (ActionState, Option<String>) {
    if action != ContainerAction::Restart && dispatch(action, observed) == Call::None {
        return (ActionState::Succeeded, None);
    }
    let state = serde_json::to_value(observed)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    (
        ActionState::Failed,
        Some(format!(
            "interrupted: the controller stopped during this action, which was not repeated (container is {state})"
        )),
    )
}

/// Record a claimed, unfinished request from the current object and consume it, without a Docker
/// call. Read fresh: a stale cache copy may show a request that was finished meanwhile.
async fn finish_interrupted(
    api: &Api<Container>,
    name: &str,
    action: ContainerAction,
    raw: &str,
) -> Result<(), ReconcileError> {
    let Some(c) = api.get_opt(name).await? else {
        return Ok(());
    };
    let ann = c.annotations();
    if ann.get(ACTION).map(String::as_str) != Some(raw)
        || ann.get(CLAIM).map(String::as_str) != Some(raw)
    {
        return Ok(());
    }
    let observed = c.status.as_ref().map(|s| s.status).unwrap_or_default();
    let (state, error) = interrupted_outcome(action, observed);
    let at = now();
    let last = ContainerLastAction {
        action,
        state,
        error,
        observed_at: Some(at.clone()),
        completed_at: Some(at),
    };
    tracing::warn!(?action, state = ?last.state, "claimed action found unfinished; not repeated");
    if write_last_action(api, &c, &last).await? {
        remove_annotation(api, &c, raw).await?;
    }
    Ok(())
}

/// One Docker call through the gateway; `Err` carries Docker's error text.
async fn run_call(gateway: &Gateway, id: &str, call: Call) -> Result<(), String> {
    let mut gw = gateway.clone();
    let r = |id: &str| ContainerRef { id: id.to_string() };
    let stop = |id: &str| StopContainerRequest {
        id: id.to_string(),
        timeout_seconds: None,
    };
    let span = tracing::info_span!("gateway", call = ?call, %id);
    async {
        match call {
            Call::None => Ok(()),
            Call::FailNotRunning => Err(format!("cannot unpause container {id}: not running")),
            Call::Start => gw.start_container(r(id)).await.map(|_| ()).map_err(text),
            Call::Stop => gw.stop_container(stop(id)).await.map(|_| ()).map_err(text),
            Call::Pause => gw.pause_container(r(id)).await.map(|_| ()).map_err(text),
            Call::Unpause => gw.unpause_container(r(id)).await.map(|_| ()).map_err(text),
            Call::Restart => gw
                .restart_container(stop(id))
                .await
                .map(|_| ())
                .map_err(text),
        }
    }
    .instrument(span)
    .await
}

fn text(s: tonic::Status) -> String {
    s.message().to_string()
}

/// Deletion forwarding: `remove` (the Docker delete, NotFound is success) runs once, then our
/// finalizer is stripped; conflicts on the finalizer are re-read and retried inside
/// `finalizer::remove`, never by repeating the Docker call (R-ENG-S10).
pub async fn forward_delete<F, Fut>(
    api: &Api<Container>,
    c: &Container,
    remove: F,
) -> Result<(), ReconcileError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    match remove().await {
        Ok(()) => tracing::info!("container removed in Docker"),
        Err(s) if is_not_found(&s) => tracing::info!("container already gone in Docker"),
        Err(s) => return Err(ReconcileError::Remove(s)),
    }
    rdd_kit::finalizer::remove(api, &c.name_any(), FINALIZER).await?;
    let others: Vec<&String> = c.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    if !others.is_empty() {
        // Reported, not waited on silently (R-ENG-T8).
        tracing::warn!(finalizers = ?others, "mirror still held by finalizers that are not ours");
    }
    Ok(())
}

/// Write `status.lastAction` with a merge patch under the object's resourceVersion, re-reading on
/// conflict. Returns false when the mirror is gone.
async fn write_last_action(
    api: &Api<Container>,
    c: &Container,
    last: &ContainerLastAction,
) -> Result<bool, ReconcileError> {
    let name = c.name_any();
    let mut rv = c.resource_version();
    for _ in 0..5 {
        let Some(v) = rv.clone() else { break };
        let body = json!({"metadata": {"resourceVersion": v}, "status": {"lastAction": last}});
        let pp = PatchParams {
            field_manager: Some(ACTION_MANAGER.into()),
            ..Default::default()
        };
        match api.patch_status(&name, &pp, &Patch::Merge(body)).await {
            Ok(_) => return Ok(true),
            Err(e) if is_api_status(&e, 404) => return Ok(false),
            Err(e) if is_api_status(&e, 409) => {
                rv = match api.get_opt(&name).await? {
                    Some(o) => o.resource_version(),
                    None => return Ok(false),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReconcileError::Conflict(format!(
        "lastAction of {name}: conflicts persisted"
    )))
}

/// Remove the annotation (and the claim) only while it still says `raw`: a newer request
/// survives (§4.8 step 5).
async fn remove_annotation(
    api: &Api<Container>,
    c: &Container,
    raw: &str,
) -> Result<(), ReconcileError> {
    let name = c.name_any();
    let mut cur = c.clone();
    for _ in 0..5 {
        let ann = cur.annotations();
        let same = ann.get(ACTION).map(String::as_str) == Some(raw);
        // A newer request written meanwhile keeps its annotation and loses the old claim.
        let annotations = match (same, ann.contains_key(CLAIM)) {
            (true, _) => json!({ACTION: null, CLAIM: null}),
            (false, true) => json!({CLAIM: null}),
            (false, false) => return Ok(()),
        };
        let body = json!({"metadata": {
            "resourceVersion": cur.resource_version(),
            "annotations": annotations,
        }});
        let pp = PatchParams {
            field_manager: Some(ACTION_MANAGER.into()),
            ..Default::default()
        };
        match api.patch(&name, &pp, &Patch::Merge(body)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_api_status(&e, 404) => return Ok(()),
            Err(e) if is_api_status(&e, 409) => match api.get_opt(&name).await? {
                Some(o) => cur = o,
                None => return Ok(()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReconcileError::Conflict(format!(
        "action annotation of {name}: conflicts persisted"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerAction as A;
    use ContainerStatusValue as S;

    const STATES: [S; 9] = [
        S::Running,
        S::Paused,
        S::Created,
        S::Exited,
        S::Dead,
        S::Pausing,
        S::Restarting,
        S::Removing,
        S::Unknown,
    ];

    /// Every cell of the matrix in the module documentation (R-ENG-I1, R-ENG-T3, R-ENG-DOC4).
    #[test]
    fn r_eng_i1_r_eng_t3_matrix_every_cell() {
        use Call::*;
        let rows: [(A, [Call; 9]); 5] = [
            (
                A::Start,
                [
                    None, Unpause, Start, Start, Start, Start, Start, Start, Start,
                ],
            ),
            (
                A::Stop,
                [Stop, Stop, None, None, None, Stop, Stop, Stop, Stop],
            ),
            (
                A::Pause,
                [Pause, None, Pause, Pause, Pause, Pause, Pause, Pause, Pause],
            ),
            (
                A::Unpause,
                [
                    None,
                    Unpause,
                    FailNotRunning,
                    FailNotRunning,
                    FailNotRunning,
                    FailNotRunning,
                    FailNotRunning,
                    FailNotRunning,
                    FailNotRunning,
                ],
            ),
            (A::Restart, [Restart; 9]),
        ];
        for (action, cells) in rows {
            for (state, want) in STATES.iter().zip(cells) {
                assert_eq!(dispatch(action, *state), want, "{action:?} on {state:?}");
            }
        }
    }

    fn mirror(
        ns: &str,
        annotation: Option<&str>,
        finalizers: &[&str],
        deleting: bool,
    ) -> Container {
        let mut c = Container::new(&"a".repeat(64), Default::default());
        c.metadata.namespace = Some(ns.into());
        if let Some(a) = annotation {
            c.metadata.annotations = Some([(ACTION.to_string(), a.to_string())].into());
        }
        c.metadata.finalizers = Some(finalizers.iter().map(|s| s.to_string()).collect());
        if deleting {
            c.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        c
    }

    /// A fake API server: GETs answer the mirror, the first PATCH answers 409, later ones 200.
    fn fake_api(patches: Arc<std::sync::atomic::AtomicUsize>, obj: Container) -> Client {
        use std::sync::atomic::Ordering;
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let patches = patches.clone();
            let obj = obj.clone();
            async move {
                let (code, body) = if req.method() == http::Method::PATCH {
                    if patches.fetch_add(1, Ordering::SeqCst) == 0 {
                        (
                            409,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "Conflict", "code": 409, "message": "conflict"}),
                        )
                    } else {
                        let mut o = obj.clone();
                        o.metadata.finalizers = None;
                        (200, serde_json::to_value(o).unwrap())
                    }
                } else {
                    (200, serde_json::to_value(&obj).unwrap())
                };
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        Client::new(svc, "ns")
    }

    #[tokio::test]
    async fn r_eng_s10_a_409_on_the_finalizer_does_not_repeat_the_docker_delete() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut c = mirror("ns", None, &[FINALIZER], true);
        c.metadata.resource_version = Some("7".into());
        let patches = Arc::new(AtomicUsize::new(0));
        let api: Api<Container> = Api::namespaced(fake_api(patches.clone(), c.clone()), "ns");
        let removes = Arc::new(AtomicUsize::new(0));
        let r = removes.clone();
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            forward_delete(&api, &c, move || async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
        .await
        .expect("in time");
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(
            removes.load(Ordering::SeqCst),
            1,
            "Docker delete exactly once"
        );
        assert_eq!(
            patches.load(Ordering::SeqCst),
            2,
            "409, then the finalizer removed"
        );
    }

    #[tokio::test]
    async fn r_eng_s10_docker_not_found_is_success() {
        use std::sync::atomic::AtomicUsize;
        let c = mirror("ns", None, &[FINALIZER], true);
        let patches = Arc::new(AtomicUsize::new(1));
        let api: Api<Container> = Api::namespaced(fake_api(patches, c.clone()), "ns");
        let res = forward_delete(&api, &c, || async {
            Err(tonic::Status::not_found("No such container"))
        })
        .await;
        assert!(res.is_ok(), "{res:?}");
        let res = forward_delete(&api, &c, || async {
            Err(tonic::Status::unavailable("docker down"))
        })
        .await;
        assert!(matches!(res, Err(ReconcileError::Remove(_))), "{res:?}");
    }

    #[test]
    fn r_eng_d1_table_rows() {
        let on = EngineState {
            ns: Some("ns".into()),
            connected: true,
            wanted: true,
        };
        let off = EngineState {
            ns: Some("ns".into()),
            connected: false,
            wanted: true,
        };
        assert_eq!(
            decide(&mirror("other", Some("stop"), &[], false), &on),
            Step::NotOurs
        );
        let unknown = EngineState::default();
        assert_eq!(
            decide(&mirror("ns", Some("stop"), &[FINALIZER], false), &unknown),
            Step::Wait
        );
        assert_eq!(
            decide(&mirror("ns", None, &[FINALIZER], true), &unknown),
            Step::Wait
        );
        assert_eq!(
            decide(&mirror("ns", None, &[FINALIZER], false), &unknown),
            Step::NotOurs
        );
        assert_eq!(
            decide(&mirror("ns", None, &[FINALIZER], false), &on),
            Step::Nothing
        );
        assert_eq!(
            decide(&mirror("ns", Some("stop"), &[FINALIZER], false), &on),
            Step::Act(A::Stop, "stop".into())
        );
        assert_eq!(
            decide(&mirror("ns", Some("stop"), &[FINALIZER], false), &off),
            Step::Wait
        );
        assert_eq!(
            decide(&mirror("ns", Some("kill"), &[FINALIZER], false), &on),
            Step::DropInvalid("kill".into())
        );
        assert_eq!(
            decide(&mirror("ns", None, &[FINALIZER], true), &on),
            Step::ForwardDelete
        );
        assert_eq!(
            decide(&mirror("ns", None, &[FINALIZER], true), &off),
            Step::Wait
        );
        assert_eq!(
            decide(&mirror("ns", None, &["x.io/hold"], true), &on),
            Step::ReportForeign(vec!["x.io/hold".into()])
        );
        // A terminating mirror's pending action is not run: the delete wins.
        assert_eq!(
            decide(&mirror("ns", Some("start"), &[FINALIZER], true), &on),
            Step::ForwardDelete
        );
    }

    #[test]
    fn a_claimed_request_is_never_dispatched_again() {
        let on = EngineState {
            ns: Some("ns".into()),
            connected: true,
            wanted: true,
        };
        let mut c = mirror("ns", Some("restart"), &[FINALIZER], false);
        c.annotations_mut().insert(CLAIM.into(), "restart".into());
        assert_eq!(
            decide(&c, &on),
            Step::Interrupted(A::Restart, "restart".into())
        );
        // A newer request replaced the claimed one: it is a request of its own.
        c.annotations_mut().insert(ACTION.into(), "stop".into());
        assert_eq!(decide(&c, &on), Step::Act(A::Stop, "stop".into()));
    }

    #[test]
    fn an_interrupted_action_is_judged_by_the_observed_state() {
        assert_eq!(
            interrupted_outcome(A::Stop, S::Exited),
            (ActionState::Succeeded, None)
        );
        assert_eq!(
            interrupted_outcome(A::Start, S::Running),
            (ActionState::Succeeded, None)
        );
        let (st, err) = interrupted_outcome(A::Stop, S::Running);
        assert_eq!(st, ActionState::Failed);
        assert!(err.unwrap().contains("container is running"));
        // A restart leaves no trace in the state: never reported as done.
        assert_eq!(
            interrupted_outcome(A::Restart, S::Running).0,
            ActionState::Failed
        );
    }
}
