//! The sweep (controllers.md §4.11): when mirroring is no longer wanted, every object of a kind in
//! NS loses our finalizer and is deleted; no Docker call is made. Objects that someone else's
//! finalizer keeps alive are named in the result instead of being waited on silently (R-ENG-T8).

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::{FINALIZER, MirrorError, is_api_status};

/// What a sweep of one kind left behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub deleted: usize,
    /// `kind/name (finalizers)` of objects still present after the wait, held by finalizers that
    /// are not ours.
    pub blocked: Vec<String>,
}

/// Sweep every `K` in `api`'s namespace. Per-object errors are collected and the sweep goes on;
/// then it waits up to `wait` for the objects to disappear.
pub async fn sweep<K>(api: &Api<K>, wait: Duration) -> Result<SweepReport, MirrorError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut report = SweepReport::default();
    let mut errors = Vec::new();
    let list = api.list(&ListParams::default()).await?;
    for obj in list.items {
        let name = obj.name_any();
        if let Err(e) = rdd_kit::finalizer::remove(api, &name, FINALIZER).await {
            errors.push(format!("{name}: {e}"));
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => report.deleted += 1,
            Err(e) if is_api_status(&e, 404) => {}
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(MirrorError::Other(format!(
            "sweep of {}: {}",
            K::plural(&()),
            errors.join("; ")
        )));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = api.list(&ListParams::default()).await?;
        if left.items.is_empty() {
            return Ok(report);
        }
        if tokio::time::Instant::now() >= deadline {
            report.blocked = left
                .items
                .iter()
                .map(|o| {
                    format!(
                        "{}/{} ({})",
                        K::kind(&()),
                        o.name_any(),
                        o.finalizers().join(", ")
                    )
                })
                .collect();
            tracing::warn!(blocked = ?report.blocked, "sweep: objects held by foreign finalizers");
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
