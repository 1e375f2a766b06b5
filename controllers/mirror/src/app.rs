//! The App as a mirror controller sees it: whether mirroring is wanted, in which namespace, at
//! which generation; and the writer of this controller's own App condition `<Kind>sSynced`.
//!
//! App `status.conditions` is a list-map keyed by `type`, so a server-side apply that names only
//! our entry owns only our entry: the other writers' conditions survive (R-ENG-I2, R-ENG-D3).

use kube::Api;
use rdd_api::app::{App, EngineName};
use rdd_kit::apply::Applier;
use rdd_kit::conditions::{self, Desired};
use serde_json::json;

use crate::MirrorError;

/// The singleton App's name.
pub const APP_NAME: &str = "app";

/// What the App asks of a mirror controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Running moby engine: mirror into `ns`.
    Mirror { ns: String, generation: i64 },
    /// Not running: no session, mirrors swept, `False/Stopped`.
    Stopped { ns: String, generation: i64 },
    /// Running a non-moby engine: no session, mirrors swept, `True/NotApplicable`.
    NotApplicable { ns: String, generation: i64 },
    /// App deleted or being deleted (gap G-1): sweep in the last known namespace, write nothing.
    Gone,
}

impl Wanted {
    pub fn ns(&self) -> Option<&str> {
        match self {
            Wanted::Mirror { ns, .. }
            | Wanted::Stopped { ns, .. }
            | Wanted::NotApplicable { ns, .. } => Some(ns),
            Wanted::Gone => None,
        }
    }
}

/// The resource namespace NS (resources.md §0.3).
pub fn namespace(app: &App) -> String {
    if app.spec.namespace.is_empty() {
        "default".into()
    } else {
        app.spec.namespace.clone()
    }
}

/// wanted = App exists, not deleting, `Running=True`, engine `moby` (processes.md).
pub fn evaluate(app: Option<&App>) -> Wanted {
    let Some(app) = app else {
        return Wanted::Gone;
    };
    if app.metadata.deletion_timestamp.is_some() {
        return Wanted::Gone;
    }
    let ns = namespace(app);
    let generation = app.metadata.generation.unwrap_or(0);
    let running = app
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, "Running"))
        .is_some_and(|c| c.status == "True");
    match (running, app.spec.container_engine.name) {
        (true, EngineName::Moby) => Wanted::Mirror { ns, generation },
        (true, _) => Wanted::NotApplicable { ns, generation },
        (false, _) => Wanted::Stopped { ns, generation },
    }
}

/// The `<Kind>sSynced` values of `docs/api.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Synced {
    Connected,
    ConnectFailed(String),
    Stopped,
    NotApplicable,
    /// The sweep could not finish: objects held by someone else's finalizer (R-ENG-T8).
    SweepBlocked(String),
}

/// Writes one App condition under this controller's field manager, only when it changes.
#[derive(Clone)]
pub struct SyncedWriter {
    pub api: Api<App>,
    pub applier: Applier,
    /// `ContainersSynced`, `ImagesSynced`, `VolumesSynced`.
    pub type_: String,
    /// `Containers synced`, …
    pub connected_message: String,
}

impl SyncedWriter {
    /// Set the condition to `value`, stamped with `generation` (the App generation the decision
    /// was made on, R-ENG-I3). Returns whether a write happened; a missing App is a no-op
    /// (R-ENG-S2).
    pub async fn write(&self, generation: i64, value: &Synced) -> Result<bool, MirrorError> {
        let (status, reason, message) = match value {
            Synced::Connected => ("True", "Connected", self.connected_message.clone()),
            Synced::ConnectFailed(m) => ("False", "ConnectFailed", m.clone()),
            Synced::Stopped => ("False", "Stopped", "Container engine stopped".to_string()),
            Synced::NotApplicable => (
                "True",
                "NotApplicable",
                "Engine mirroring is only supported with the moby backend".to_string(),
            ),
            Synced::SweepBlocked(m) => ("False", "SweepBlocked", m.clone()),
        };
        let Some(app) = self.api.get_opt(APP_NAME).await? else {
            return Ok(false);
        };
        let mut current: Vec<_> = app
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, &self.type_))
            .cloned()
            .into_iter()
            .collect();
        let desired = Desired {
            type_: &self.type_,
            status,
            reason,
            message: &message,
            observed_generation: Some(generation),
        };
        if !conditions::set(&mut current, &desired, &conditions::now()) {
            return Ok(false);
        }
        let body = json!({ "conditions": current });
        let written = self.applier.status(&self.api, APP_NAME, body).await?;
        tracing::info!(condition = %self.type_, reason, generation, "App condition written");
        Ok(written.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdd_api::app::{AppSpec, AppStatus, ContainerEngine};
    use rdd_api::conditions::Condition;

    fn app(running: bool, engine: EngineName, deleting: bool) -> App {
        let mut a = App::new(
            "app",
            AppSpec {
                running,
                namespace: "ns1".into(),
                container_engine: ContainerEngine { name: engine },
                kubernetes: None,
            },
        );
        a.metadata.generation = Some(4);
        if deleting {
            a.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        a.status = Some(AppStatus {
            kubernetes_port: None,
            conditions: vec![Condition {
                type_: "Running".into(),
                status: if running { "True" } else { "False" }.into(),
                observed_generation: Some(4),
                last_transition_time: "2026-01-01T00:00:00Z".into(),
                reason: "x".into(),
                message: String::new(),
            }],
        });
        a
    }

    #[tokio::test]
    async fn r_eng_s2_a_missing_app_is_a_successful_no_op() {
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"});
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(404)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            )
        });
        let w = SyncedWriter {
            api: Api::all(kube::Client::new(svc, "default")),
            applier: Applier::new("t"),
            type_: "ContainersSynced".into(),
            connected_message: "Containers synced".into(),
        };
        for v in [Synced::Connected, Synced::Stopped] {
            assert!(!w.write(3, &v).await.unwrap());
        }
    }

    #[test]
    fn wanted_only_for_a_live_running_moby_app() {
        let m = |ns: &str| Wanted::Mirror {
            ns: ns.into(),
            generation: 4,
        };
        assert_eq!(
            evaluate(Some(&app(true, EngineName::Moby, false))),
            m("ns1")
        );
        assert_eq!(
            evaluate(Some(&app(true, EngineName::Containerd, false))),
            Wanted::NotApplicable {
                ns: "ns1".into(),
                generation: 4
            }
        );
        assert_eq!(
            evaluate(Some(&app(false, EngineName::Moby, false))),
            Wanted::Stopped {
                ns: "ns1".into(),
                generation: 4
            }
        );
        // G-1: a terminating App with a stale Running=True is not wanted.
        assert_eq!(
            evaluate(Some(&app(true, EngineName::Moby, true))),
            Wanted::Gone
        );
        assert_eq!(evaluate(None), Wanted::Gone);
    }
}
