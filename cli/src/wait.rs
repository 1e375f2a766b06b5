//! Waiting on one object (the `rdd limavm` waits) and `rdd ctl wait-condition` (cli.md §4).

use std::fmt::Debug;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::exit::{parse_duration, timed_out};
use crate::svc::control;
use rdd_process::instance::Instance;

/// Follow the object `name` until `done` accepts it (`None`: the object does not exist).
/// `done` returning an error ends the wait with it; the deadline (zero = none) ends it with
/// exit 4 and `context deadline exceeded`.
pub async fn until<K, F>(
    api: Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    mut done: F,
) -> anyhow::Result<Option<K>>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: FnMut(Option<&K>) -> Result<bool, String>,
{
    let deadline = (timeout != Duration::ZERO).then(|| tokio::time::Instant::now() + timeout);
    let mut stream = watcher::watch_object(api, name).boxed();
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    return Err(timed_out(format!(
                        "timed out waiting for {what}: context deadline exceeded"
                    )));
                }
            },
            None => stream.next().await,
        };
        match next {
            Some(Ok(obj)) => {
                if done(obj.as_ref()).map_err(anyhow::Error::msg)? {
                    return Ok(obj);
                }
            }
            // The watcher re-establishes itself after benign closures.
            Some(Err(e)) => tracing::debug!(error = %e, "watch interrupted"),
            None => anyhow::bail!("the watch of {what} ended"),
        }
    }
}

/// The condition `type_` of an object's `status.conditions`, if present.
pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// `rdd ctl wait-condition TYPE[.GROUP]/NAME CONDITION[=STATUS] [flags]`.
#[derive(Parser, Debug)]
#[command(name = "rdd ctl wait-condition", no_binary_name = true)]
struct Args {
    /// TYPE[.GROUP]/NAME and CONDITION[=STATUS].
    #[arg(allow_hyphen_values = false)]
    positional: Vec<String>,
    /// Required reason of the condition.
    #[arg(long)]
    reason: Option<String>,
    /// The condition's lastTransitionTime must be after this (RFC 3339, or `startup`: this
    /// control plane's start).
    #[arg(long)]
    since: Option<String>,
    /// Deadline (Go duration; 0 = none).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Namespace of a namespaced object.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    namespace: String,
}

struct Want {
    type_: String,
    status: String,
    reason: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
}

impl Want {
    fn met(&self, obj: &DynamicObject) -> bool {
        let Some(c) = condition(&obj.data["status"], &self.type_) else {
            return false;
        };
        if c["status"] != self.status.as_str() {
            return false;
        }
        if let Some(r) = &self.reason
            && c["reason"] != r.as_str()
        {
            return false;
        }
        match &self.since {
            None => true,
            Some(since) => c["lastTransitionTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > *since),
        }
    }
}

fn parse_target(s: &str) -> Result<(String, Option<String>, String), String> {
    let Some((ty, name)) = s.split_once('/') else {
        return Err(format!("expected TYPE/NAME, got {s:?}"));
    };
    if ty.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!("expected TYPE/NAME, got {s:?}"));
    }
    let (ty, group) = match ty.split_once('.') {
        Some((t, g)) => (t.to_lowercase(), Some(g.to_string())),
        None => (ty.to_lowercase(), None),
    };
    Ok((ty, group, name.to_string()))
}

fn matches(ar: &ApiResource, ty: &str, group: Option<&str>) -> bool {
    let named = ar.plural == ty || ar.kind.to_lowercase() == ty;
    let grouped = match group {
        None => true,
        Some(g) => ar.group == g || ar.group.starts_with(&format!("{g}.")),
    };
    named && grouped
}

async fn resolve(
    client: &kube::Client,
    ty: &str,
    group: Option<&str>,
) -> anyhow::Result<(ApiResource, ApiCapabilities)> {
    let discovery = Discovery::new(client.clone()).run().await?;
    for g in discovery.groups() {
        for (ar, caps) in g.recommended_resources() {
            if matches(&ar, ty, group) {
                return Ok((ar, caps));
            }
        }
    }
    let full = group.map_or(ty.to_string(), |g| format!("{ty}.{g}"));
    anyhow::bail!("the server doesn't have a resource type {full:?}")
}

pub async fn wait_condition(inst: &Instance, raw: &[String]) -> anyhow::Result<i32> {
    let a = Args::try_parse_from(raw).map_err(|e| {
        let text = e.to_string();
        anyhow::anyhow!(
            "{}",
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
        )
    })?;
    if a.positional.len() != 2 {
        anyhow::bail!(
            "expected TYPE/NAME and CONDITION[=STATUS] arguments, got {} arguments",
            a.positional.len()
        );
    }
    let (ty, group, name) = parse_target(&a.positional[0]).map_err(anyhow::Error::msg)?;
    let (type_, status) = match a.positional[1].split_once('=') {
        Some((t, s)) => (t.to_string(), s.to_string()),
        None => (a.positional[1].clone(), "True".to_string()),
    };
    let client = control::client(inst).await?;
    let since = match a.since.as_deref() {
        None => None,
        Some("startup") => Some(control::startup_time(&client).await?),
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| anyhow::anyhow!("invalid --since {t:?}: {e}"))?
                .with_timezone(&chrono::Utc),
        ),
    };
    let want = Want {
        type_,
        status,
        reason: a.reason,
        since,
    };
    let (ar, caps) = resolve(&client, &ty, group.as_deref()).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client, &a.namespace, &ar),
        Scope::Cluster => Api::all_with(client, &ar),
    };
    let what = format!(
        "{}/{name} condition {}={}",
        ar.kind.to_lowercase(),
        want.type_,
        want.status
    );
    let mut seen = false;
    until(api, &name, a.timeout, &what, |o| match o {
        Some(o) => {
            seen = true;
            Ok(want.met(o))
        }
        None if seen => Err(format!("{} {name:?} was deleted while waiting", ar.kind)),
        None => Ok(false),
    })
    .await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("limavm.lima.rancherdesktop.io/rd").unwrap(),
            (
                "limavm".to_string(),
                Some("lima.rancherdesktop.io".to_string()),
                "rd".to_string()
            )
        );
        assert_eq!(
            parse_target("rd").unwrap_err(),
            "expected TYPE/NAME, got \"rd\""
        );
        let ar = ApiResource {
            group: "lima.rancherdesktop.io".into(),
            version: "v1alpha1".into(),
            api_version: "lima.rancherdesktop.io/v1alpha1".into(),
            kind: "LimaVM".into(),
            plural: "limavms".into(),
        };
        assert!(matches(&ar, "limavm", None));
        assert!(matches(&ar, "limavms", Some("lima")));
        assert!(!matches(&ar, "limavm", Some("app")));
    }

    #[test]
    fn condition_rules() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "X", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Running", "status": "False", "reason": "Stopped",
                "lastTransitionTime": "2025-01-01T00:00:10Z"}]}
        }))
        .unwrap();
        let want = |status: &str, reason: Option<&str>, since: Option<&str>| Want {
            type_: "Running".into(),
            status: status.into(),
            reason: reason.map(str::to_string),
            since: since.map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .with_timezone(&chrono::Utc)
            }),
        };
        assert!(want("False", Some("Stopped"), None).met(&obj));
        assert!(!want("True", None, None).met(&obj));
        assert!(!want("False", Some("Other"), None).met(&obj));
        assert!(want("False", None, Some("2025-01-01T00:00:09Z")).met(&obj));
        // Strictly after.
        assert!(!want("False", None, Some("2025-01-01T00:00:10Z")).met(&obj));
    }
}
