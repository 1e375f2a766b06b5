//! The App webhooks of resources.md §1.5, served by the app-controller process:
//!
//! - `app-defaulter` (mutating, CREATE/UPDATE): Kubernetes enabled with no version → channel
//!   `stable`; a version that names a channel of the bundled k3s list (a leading `v` ignored for
//!   the lookup) → that channel's concrete bare version; anything else is left as it is.
//! - `app-validator` (validating, CREATE/UPDATE): enabled needs a version; a version must be one
//!   of the bundled list's (bare, without `v` and `+k3s…`).
//!
//! Pure decisions on the request: no API calls, so the answers are immediate.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use rdd_kit::webhook::Routes;
use serde::Deserialize;
use serde_json::{Value, json};

/// The bundled version list (`k3s-versions.json`, the format Rancher Desktop ships).
#[derive(Debug, Deserialize)]
pub struct K3sVersions {
    pub versions: Vec<String>,
    pub channels: BTreeMap<String, String>,
}

impl K3sVersions {
    pub fn bundled() -> Result<K3sVersions, serde_json::Error> {
        serde_json::from_str(include_str!("k3s-versions.json"))
    }

    /// Supported bare versions: `v1.32.0+k3s1` → `1.32.0`.
    pub fn supported(&self) -> Vec<String> {
        self.versions
            .iter()
            .map(|v| {
                let v = v.strip_prefix('v').unwrap_or(v);
                v.split('+').next().unwrap_or(v).to_string()
            })
            .collect()
    }

    /// The concrete version of a channel, matched with any leading `v` removed on both sides.
    pub fn channel(&self, name: &str) -> Option<&str> {
        let want = name.strip_prefix('v').unwrap_or(name);
        self.channels
            .iter()
            .find(|(k, _)| k.strip_prefix('v').unwrap_or(k) == want)
            .map(|(_, v)| v.as_str())
    }

    /// The version the defaulter writes, or None when it leaves the field alone.
    pub fn default_version(&self, enabled: bool, version: &str) -> Option<String> {
        let asked = if version.is_empty() {
            if !enabled {
                return None;
            }
            "stable"
        } else {
            version
        };
        match self.channel(asked) {
            Some(v) if v != version => Some(v.to_string()),
            _ => None,
        }
    }

    /// Why the validator refuses, if it does.
    pub fn refusal(&self, enabled: bool, version: &str) -> Option<String> {
        if enabled && version.is_empty() {
            return Some(
                "spec.kubernetes.version must not be empty when spec.kubernetes.enabled is true"
                    .into(),
            );
        }
        if !version.is_empty() && !self.supported().iter().any(|v| v == version) {
            return Some(format!(
                "spec.kubernetes.version {version:?} is not supported; see the bundled k3s-versions.json for valid versions"
            ));
        }
        None
    }
}

fn kubernetes(req: &AdmissionRequest<DynamicObject>) -> (bool, String, bool) {
    let spec = req
        .object
        .as_ref()
        .and_then(|o| o.data.get("spec"))
        .cloned()
        .unwrap_or(Value::Null);
    let k = spec.get("kubernetes");
    let enabled = k
        .and_then(|k| k.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let version = k
        .and_then(|k| k.get("version"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (enabled, version, k.is_some())
}

pub fn routes(versions: std::sync::Arc<K3sVersions>) -> Routes {
    let v2 = versions.clone();
    Routes::default()
        .handle("/mutate-app", move |req| {
            let resp = AdmissionResponse::from(req);
            let (enabled, version, has_kubernetes) = kubernetes(req);
            let Some(concrete) = versions.default_version(enabled, &version) else {
                return resp;
            };
            let patch = if has_kubernetes {
                json!([{"op": "add", "path": "/spec/kubernetes/version", "value": concrete}])
            } else {
                json!([{"op": "add", "path": "/spec/kubernetes", "value": {"version": concrete}}])
            };
            match serde_json::from_value::<json_patch::Patch>(patch) {
                Ok(p) => match resp.clone().with_patch(p) {
                    Ok(r) => r,
                    Err(e) => resp.deny(format!("app-defaulter: {e}")),
                },
                Err(e) => resp.deny(format!("app-defaulter: {e}")),
            }
        })
        .handle("/validate-app", move |req| {
            let resp = AdmissionResponse::from(req);
            let (enabled, version, _) = kubernetes(req);
            match v2.refusal(enabled, &version) {
                Some(why) => resp.deny(why),
                None => resp,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> K3sVersions {
        K3sVersions::bundled().unwrap()
    }

    #[test]
    fn defaulter_resolves_channels_and_leaves_the_rest() {
        let v = v();
        assert_eq!(v.default_version(true, "").as_deref(), Some("1.34.6"));
        assert_eq!(v.default_version(false, ""), None);
        assert_eq!(v.default_version(true, "stable").as_deref(), Some("1.34.6"));
        assert_eq!(v.default_version(true, "1.32").as_deref(), Some("1.32.13"));
        assert_eq!(v.default_version(true, "v1.32").as_deref(), Some("1.32.13"));
        assert_eq!(
            v.default_version(false, "latest").as_deref(),
            Some("1.35.3")
        );
        // A concrete version, or anything unknown (its `v` kept), is left for the validator.
        assert_eq!(v.default_version(true, "1.32.0"), None);
        assert_eq!(v.default_version(true, "v1.32.0"), None);
        assert_eq!(v.default_version(true, "nonsense"), None);
    }

    #[test]
    fn validator_messages() {
        let v = v();
        assert_eq!(
            v.refusal(true, "").as_deref(),
            Some("spec.kubernetes.version must not be empty when spec.kubernetes.enabled is true")
        );
        assert_eq!(v.refusal(false, ""), None);
        assert_eq!(v.refusal(true, "1.32.0"), None);
        assert_eq!(
            v.refusal(true, "v1.32.0").as_deref(),
            Some(
                "spec.kubernetes.version \"v1.32.0\" is not supported; see the bundled k3s-versions.json for valid versions"
            )
        );
        assert!(v.refusal(false, "9.9.9").is_some());
    }
}
