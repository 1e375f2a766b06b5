//! Optional Lease-based leader election for cluster deployments with more than one replica. The
//! process works only while it holds the Lease; it renews every `renew`, and another candidate
//! takes over once `duration` has passed without renewal. On the desktop, with one process per
//! controller, election is off.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::KitError;

/// Whether `me` may take (or keep) `lease` at `now`.
pub fn may_hold(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else {
        return true;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match &spec.renew_time {
        Some(t) => t.0 + duration < now,
        None => true,
    }
}

fn spec(me: &str, duration: Duration, now: Timestamp, previous: Option<&LeaseSpec>) -> LeaseSpec {
    let same_holder = previous.and_then(|p| p.holder_identity.as_deref()) == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration.as_secs() as i32),
        renew_time: Some(MicroTime(now)),
        acquire_time: if same_holder {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(
            previous.and_then(|p| p.lease_transitions).unwrap_or(0)
                + i32::from(!same_holder && previous.is_some()),
        ),
        ..Default::default()
    }
}

/// One round: take or renew the Lease if allowed. Returns whether `me` holds it afterwards.
/// Writes carry the read resourceVersion, so two candidates can never both win a round.
pub async fn try_hold(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    duration: Duration,
) -> Result<bool, KitError> {
    let now = Timestamp::now();
    match api.get_opt(name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                spec: Some(spec(me, duration, now, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Some(mut lease) => {
            if !may_hold(lease.spec.as_ref(), me, now) {
                return Ok(false);
            }
            lease.spec = Some(spec(me, duration, now, lease.spec.as_ref()));
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Keep trying to hold the Lease in the background; the receiver says whether we lead now.
pub fn elect(
    api: Api<Lease>,
    name: String,
    me: String,
    duration: Duration,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let renew = duration / 3;
    tokio::spawn(async move {
        loop {
            let leading = match try_hold(&api, &name, &me, duration).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "lease round failed");
                    false
                }
            };
            if tx.send(leading).is_err() {
                return;
            }
            tokio::time::sleep(renew).await;
        }
    });
    rx
}

/// The variable that turns election on: the namespace of the Lease (the chart sets it to the
/// pod's namespace through the downward API). Unset on the desktop, where `rdd svc` runs one
/// process per controller.
pub const NAMESPACE_ENV: &str = "RDD_LEADER_ELECTION_NAMESPACE";

/// How long a Lease stays valid without renewal (renewed every third of it).
pub const DURATION: Duration = Duration::from_secs(15);

/// Leader election for a controller process, when [`NAMESPACE_ENV`] is set: wait until this
/// process holds Lease `name` (identity `POD_NAME`, else `HOSTNAME`, else the pid), then keep it
/// in the background; a process that loses it exits with status 1, so it restarts from a fresh
/// cache instead of reconciling beside the new leader, as controller-runtime does. Returns at
/// once when election is off.
pub async fn gate(client: &kube::Client, name: &str) -> Result<(), KitError> {
    let Some(ns) = std::env::var(NAMESPACE_ENV).ok().filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let me = ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    tracing::info!(lease = %format!("{ns}/{name}"), identity = %me, "waiting for leadership");
    let mut rx = elect(
        Api::namespaced(client.clone(), &ns),
        name.to_string(),
        me,
        DURATION,
    );
    rx.wait_for(|leading| *leading)
        .await
        .map_err(|_| KitError::Config("leader election stopped".into()))?;
    tracing::info!(lease = %format!("{ns}/{name}"), "leading");
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            if !*rx.borrow() {
                tracing::error!("lost the leader Lease; exiting so a fresh process takes over");
                std::process::exit(1);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(who: &str, renewed: Timestamp, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(secs),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        }
    }

    #[test]
    fn a_live_lease_is_kept_by_its_holder_only() {
        let now = Timestamp::now();
        let s = held_by("a", now, 10);
        assert!(may_hold(Some(&s), "a", now));
        assert!(!may_hold(Some(&s), "b", now));
        let expired = held_by("a", now - SignedDuration::from_secs(11), 10);
        assert!(may_hold(Some(&expired), "b", now));
        assert!(may_hold(None, "b", now));
        let taken = spec("b", Duration::from_secs(10), now, Some(&expired));
        assert_eq!(taken.lease_transitions, Some(1));
    }
}
