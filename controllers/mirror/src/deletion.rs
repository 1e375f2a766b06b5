//! API-side deletion forwarding (controllers.md §4.10), the part every mirror kind shares.
//!
//! | observed mirror | Namespace NS | engine session | step |
//! |---|---|---|---|
//! | deleting with our finalizer, NS not known yet (process starting, App not seen) | any | any | wait (requeue in 5 s): the runner is not woken when the session learns NS, so a deletion pending at start-up (a `kill -9` mid-deletion) would otherwise wait for an unrelated change |
//! | outside the session's NS | any | any | none (not ours) |
//! | live | any | any | none: no API write, no Docker call (R-ENG-D1) |
//! | deleting, carries our finalizer | terminating or gone | any | strip our finalizer, no Docker call: deleting NS resets the mirror view, it is not a request to delete every Docker object (the objects are mirrored again once NS is back, R-ENG-D2) |
//! | deleting, carries our finalizer | live | connected | the kind's Docker removal, then per [`Removal`] |
//! | deleting, carries our finalizer | live | not connected | wait (requeue in 5 s) |
//! | deleting, only foreign finalizers | any | any | report them (log); nothing of ours left (R-ENG-T8) |
//!
//! After the Docker removal ([`conclude`]):
//!
//! | removal | step |
//! |---|---|
//! | removed, or Docker says it is gone | strip our finalizer (re-read and retry on conflict; the Docker call is not repeated, R-ENG-S10) |
//! | no Docker call needed (no Docker identity, R-ENG-S4; a tag that moved, R-ENG-S3) | strip our finalizer |
//! | Docker refuses: conflict (in use) | condition `DeletionBlocked=True/Conflict` with Docker's message and a Warning event, both only when the message changes; keep the finalizer; retry after a delay that grows with the age of the condition (2 s … 30 s), so the mirror goes once the blocker is gone |
//! | any other Docker error | error: the runner retries with backoff |

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use rdd_api::conditions::Condition;
use rdd_kit::apply::Applier;
use rdd_kit::conditions::{self, Desired};
use rdd_kit::events::Recorder;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::session::EngineState;
use crate::{FINALIZER, MirrorError};

/// The condition a refused removal sets.
pub const DELETION_BLOCKED: &str = "DeletionBlocked";

/// The first rows of the table: what a reconcile of `obj` does before any Docker call.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    NotOurs,
    Nothing,
    /// Deleting with our finalizer: forward (or release, when NS is terminating).
    Forward,
    /// Deleting with our finalizer, engine not connected.
    Wait,
    ReportForeign(Vec<String>),
}

pub fn decide<K: Resource>(obj: &K, state: &EngineState) -> Step {
    let ours = obj.finalizers().iter().any(|f| f == FINALIZER);
    if state.ns.is_none() && ours && obj.meta().deletion_timestamp.is_some() {
        return Step::Wait;
    }
    if state.ns.as_deref() != obj.meta().namespace.as_deref() {
        return Step::NotOurs;
    }
    if obj.meta().deletion_timestamp.is_none() {
        return Step::Nothing;
    }
    match (ours, state.connected) {
        (true, true) => Step::Forward,
        (true, false) => Step::Wait,
        (false, _) if !obj.finalizers().is_empty() => {
            Step::ReportForeign(obj.finalizers().to_vec())
        }
        (false, _) => Step::Nothing,
    }
}

/// Namespace `ns` is being deleted or is already gone: its mirrors are released without a
/// Docker call. One uncached read, made only for a mirror that is being deleted: the API server
/// marks the namespace before it deletes its content, so this read cannot miss it.
pub async fn namespace_terminating(client: &Client, ns: &str) -> Result<bool, MirrorError> {
    let api: Api<Namespace> = Api::all(client.clone());
    Ok(match api.get_opt(ns).await? {
        None => true,
        Some(n) => n.metadata.deletion_timestamp.is_some(),
    })
}

/// Where [`before_removal`] left a reconcile.
#[derive(Debug)]
pub enum Preamble {
    /// Nothing (more) to do in this pass: return this action.
    Done(Action),
    /// Deleting with our finalizer, NS live, engine connected: the kind's Docker removal is next.
    Remove,
}

/// The rows of the first table that come before any Docker call, for every mirror kind: not
/// ours, live, foreign finalizers (reported), NS terminating or gone (released without a Docker
/// call), not connected (wait).
pub async fn before_removal<K>(
    client: &Client,
    api: &Api<K>,
    obj: &K,
    state: &EngineState,
) -> Result<Preamble, MirrorError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match decide(obj, state) {
        Step::NotOurs | Step::Nothing => return Ok(Preamble::Done(Action::await_change())),
        Step::ReportForeign(f) => {
            tracing::warn!(finalizers = ?f, "mirror held by finalizers that are not ours");
            return Ok(Preamble::Done(Action::await_change()));
        }
        Step::Wait | Step::Forward => {}
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    if namespace_terminating(client, &ns).await? {
        tracing::info!("namespace terminating: mirror released without a Docker call");
        release_finalizer(api, obj).await?;
        return Ok(Preamble::Done(Action::await_change()));
    }
    if !state.connected {
        return Ok(Preamble::Done(Action::requeue(WAIT)));
    }
    Ok(Preamble::Remove)
}

/// How long a pending deletion waits for the engine session (NS unknown or not connected).
pub const WAIT: Duration = Duration::from_secs(5);

/// How a kind's Docker removal ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// Docker no longer has it (NotFound).
    Gone,
    /// Released without a Docker call; the reason is logged.
    NoCall(String),
    /// Docker refused (409, e.g. in use): its message.
    Conflict(String),
}

impl Removal {
    /// Map a gateway result: NotFound → `Gone`, FAILED_PRECONDITION (Docker 409) → `Conflict`,
    /// anything else stays an error.
    pub fn from_gateway<T>(r: Result<T, tonic::Status>) -> Result<Removal, tonic::Status> {
        match r {
            Ok(_) => Ok(Removal::Removed),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(Removal::Gone),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                Ok(Removal::Conflict(s.message().to_string()))
            }
            Err(s) => Err(s),
        }
    }
}

/// Strip our finalizer from a deleting mirror and report finalizers that still hold it.
pub async fn release_finalizer<K>(api: &Api<K>, obj: &K) -> Result<(), MirrorError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    rdd_kit::finalizer::remove(api, &obj.name_any(), FINALIZER).await?;
    let others: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    if !others.is_empty() {
        // Reported, not waited on silently (R-ENG-T8).
        tracing::warn!(finalizers = ?others, "mirror still held by finalizers that are not ours");
    }
    Ok(())
}

/// The retry delay while a removal is refused: the age of the condition, between 2 and 30 s.
pub fn conflict_retry(since: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Duration {
    let age = since
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0) as u64)
        .unwrap_or(0);
    Duration::from_secs(age.clamp(2, 30))
}

/// The end of a forwarded delete, per the second table. `current` are the mirror's conditions
/// as observed; `conditions_manager` the field manager that owns them.
pub async fn conclude<K>(
    api: &Api<K>,
    obj: &K,
    removal: Removal,
    current: &[Condition],
    conditions_manager: &str,
    recorder: &Recorder,
) -> Result<Action, MirrorError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match removal {
        Removal::Removed => tracing::info!("removed in Docker"),
        Removal::Gone => tracing::info!("already gone in Docker"),
        Removal::NoCall(why) => tracing::info!(%why, "released without a Docker call"),
        Removal::Conflict(message) => {
            let mut conds = current.to_vec();
            let changed = conditions::set(
                &mut conds,
                &Desired {
                    type_: DELETION_BLOCKED,
                    status: "True",
                    reason: "Conflict",
                    message: &message,
                    observed_generation: obj.meta().generation,
                },
                &conditions::now(),
            );
            if changed {
                Applier::new(conditions_manager)
                    .status(api, &obj.name_any(), json!({ "conditions": conds }))
                    .await?;
                recorder
                    .publish(obj, true, DELETION_BLOCKED, "Delete", &message)
                    .await;
            }
            let since =
                conditions::find(&conds, DELETION_BLOCKED).map(|c| c.last_transition_time.as_str());
            let delay = conflict_retry(since, chrono::Utc::now());
            tracing::info!(%message, ?delay, "Docker refused the removal; retrying later");
            return Ok(Action::requeue(delay));
        }
    }
    release_finalizer(api, obj).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn obj(ns: &str, finalizers: &[&str], deleting: bool) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some("m".into());
        c.metadata.namespace = Some(ns.into());
        c.metadata.finalizers = Some(finalizers.iter().map(|s| s.to_string()).collect());
        if deleting {
            c.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        c
    }

    #[test]
    fn rows_of_the_table() {
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
        assert_eq!(decide(&obj("x", &[FINALIZER], true), &on), Step::NotOurs);
        let unknown = EngineState::default();
        assert_eq!(decide(&obj("x", &[FINALIZER], true), &unknown), Step::Wait);
        assert_eq!(
            decide(&obj("x", &[FINALIZER], false), &unknown),
            Step::NotOurs
        );
        assert_eq!(decide(&obj("ns", &[FINALIZER], false), &on), Step::Nothing);
        assert_eq!(decide(&obj("ns", &[FINALIZER], true), &on), Step::Forward);
        assert_eq!(decide(&obj("ns", &[FINALIZER], true), &off), Step::Wait);
        assert_eq!(
            decide(&obj("ns", &["a.io/b"], true), &on),
            Step::ReportForeign(vec!["a.io/b".into()])
        );
        assert_eq!(decide(&obj("ns", &[], true), &on), Step::Nothing);
    }

    #[test]
    fn conflicts_are_retried_slower_and_slower_up_to_30_s() {
        let now = chrono::Utc::now();
        let ago = |s: i64| (now - chrono::Duration::seconds(s)).to_rfc3339();
        assert_eq!(conflict_retry(None, now), Duration::from_secs(2));
        assert_eq!(conflict_retry(Some(&ago(0)), now), Duration::from_secs(2));
        assert_eq!(conflict_retry(Some(&ago(9)), now), Duration::from_secs(9));
        assert_eq!(
            conflict_retry(Some(&ago(600)), now),
            Duration::from_secs(30)
        );
        assert_eq!(conflict_retry(Some("garbage"), now), Duration::from_secs(2));
    }

    #[test]
    fn gateway_codes_map_to_removals() {
        assert_eq!(Removal::from_gateway(Ok(())).ok(), Some(Removal::Removed));
        assert_eq!(
            Removal::from_gateway::<()>(Err(tonic::Status::not_found("x"))).ok(),
            Some(Removal::Gone)
        );
        assert_eq!(
            Removal::from_gateway::<()>(Err(tonic::Status::failed_precondition("in use"))).ok(),
            Some(Removal::Conflict("in use".into()))
        );
        assert!(Removal::from_gateway::<()>(Err(tonic::Status::unavailable("down"))).is_err());
    }
}
