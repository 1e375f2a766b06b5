//! Finalizers: added only to live objects (never to one being deleted, R-ENG-S6), removed only
//! our own (R-ENG-T8), with a fresh read and retry on conflict and NotFound counted as success
//! (R-ENG-S10).

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::KitError;

/// What to do about our finalizer on an object as observed.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Live object without it: add it.
    Add,
    /// Deleting object that still has it: our cleanup runs, then it is removed.
    CleanupThenRemove,
    /// Deleting object without it: nothing of ours to do.
    Gone,
    /// Live object that has it.
    Present,
}

pub fn plan<K: Resource>(obj: &K, finalizer: &str) -> Plan {
    let has = obj.finalizers().iter().any(|f| f == finalizer);
    match (obj.meta().deletion_timestamp.is_some(), has) {
        (false, false) => Plan::Add,
        (false, true) => Plan::Present,
        (true, true) => Plan::CleanupThenRemove,
        (true, false) => Plan::Gone,
    }
}

/// JSON patch that appends `finalizer`, guarded by the object's resourceVersion so a concurrent
/// deletion (which sets deletionTimestamp and bumps the version) makes it fail instead of
/// re-adding a finalizer to a terminating object.
pub fn add_patch(
    resource_version: &str,
    existing: &[String],
    finalizer: &str,
) -> serde_json::Value {
    if existing.is_empty() {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ])
    }
}

/// JSON patch that removes exactly our entry, tested in place so someone else's finalizer is
/// never dropped by an index that moved.
pub fn remove_patch(existing: &[String], finalizer: &str) -> Option<serde_json::Value> {
    let i = existing.iter().position(|f| f == finalizer)?;
    let path = format!("/metadata/finalizers/{i}");
    Some(json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]))
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Add `finalizer` to a live object. Returns false when the object is gone or terminating.
pub async fn ensure<K>(api: &Api<K>, name: &str, finalizer: &str) -> Result<bool, KitError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..5 {
        let Some(obj) = api.get_opt(name).await? else {
            return Ok(false);
        };
        match plan(&obj, finalizer) {
            Plan::Present => return Ok(true),
            Plan::Gone | Plan::CleanupThenRemove => return Ok(false),
            Plan::Add => {}
        }
        let patch = add_patch(
            &obj.resource_version().unwrap_or_default(),
            obj.finalizers(),
            finalizer,
        );
        let patch: json_patch::Patch = serde_json::from_value(patch)?;
        match api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if is_status(&e, 404) => return Ok(false),
            // A failed test (changed meanwhile) or a conflict: read again.
            Err(e) if is_status(&e, 422) || is_status(&e, 409) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Remove our finalizer; NotFound is success.
pub async fn remove<K>(api: &Api<K>, name: &str, finalizer: &str) -> Result<(), KitError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..5 {
        let Some(obj) = api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(patch) = remove_patch(obj.finalizers(), finalizer) else {
            return Ok(());
        };
        let patch: json_patch::Patch = serde_json::from_value(patch)?;
        match api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) if is_status(&e, 422) || is_status(&e, 409) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn cm(finalizers: &[&str], deleting: bool) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("x".into()),
                finalizers: Some(finalizers.iter().map(|s| s.to_string()).collect()),
                deletion_timestamp: deleting.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn r_eng_s6_r_eng_t9_never_adds_to_a_terminating_object() {
        assert_eq!(plan(&cm(&[], false), "a/b"), Plan::Add);
        assert_eq!(plan(&cm(&["a/b"], false), "a/b"), Plan::Present);
        assert_eq!(plan(&cm(&[], true), "a/b"), Plan::Gone);
        assert_eq!(plan(&cm(&["other/x"], true), "a/b"), Plan::Gone);
        assert_eq!(plan(&cm(&["a/b"], true), "a/b"), Plan::CleanupThenRemove);
    }

    #[test]
    fn r_eng_t8_removes_only_its_own_entry() {
        let existing = vec!["other/x".to_string(), "a/b".to_string()];
        let p = remove_patch(&existing, "a/b").unwrap();
        assert_eq!(p[0]["path"], "/metadata/finalizers/1");
        assert_eq!(p[0]["value"], "a/b");
        assert!(remove_patch(&["other/x".to_string()], "a/b").is_none());
        let add = add_patch("7", &existing, "c/d");
        assert_eq!(add[0]["value"], "7");
        assert_eq!(add[1]["path"], "/metadata/finalizers/-");
    }
}
