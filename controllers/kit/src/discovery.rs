//! The controller-manager discovery ConfigMap (resources.md §3.4): `rdd-controller-manager` in
//! `rdd-system`, one data key per controller process whose JSON value lists its enabled
//! controllers and admin endpoint. Each process writes only its own key with server-side apply
//! under its own field manager, so processes never overwrite each other; withdrawing applies an
//! empty `data`, which removes exactly that key. The App controller reads the union of
//! `enabledControllers` to decide what `Settled` waits for.

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::json;

use crate::KitError;

pub const NAMESPACE: &str = "rdd-system";
pub const NAME: &str = "rdd-controller-manager";

/// One process's entry.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub health_port: u16,
    pub metrics_port: u16,
    pub enabled_controllers: Vec<String>,
    pub start_time: String,
    pub health_endpoint: String,
    pub metrics_endpoint: String,
}

impl Entry {
    /// An entry for a process whose admin server (health and metrics) listens on `admin`.
    pub fn new(admin: std::net::SocketAddr, controllers: &[&str]) -> Entry {
        Entry {
            health_port: admin.port(),
            metrics_port: admin.port(),
            enabled_controllers: controllers.iter().map(|c| c.to_string()).collect(),
            start_time: crate::conditions::now(),
            health_endpoint: format!("http://{admin}/healthz"),
            metrics_endpoint: format!("http://{admin}/metrics"),
        }
    }
}

fn body(data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE}, "data": data})
}

/// Publish (or refresh) `manager`'s key.
pub async fn publish(client: &Client, manager: &str, entry: &Entry) -> Result<(), KitError> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), NAMESPACE);
    let value = serde_json::to_string(entry)?;
    api.patch(
        NAME,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(body(json!({ manager: value }))),
    )
    .await?;
    Ok(())
}

/// Remove `manager`'s key (best effort at shutdown).
pub async fn withdraw(client: &Client, manager: &str) -> Result<(), KitError> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), NAMESPACE);
    api.patch(
        NAME,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(body(json!({}))),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_shape() {
        let e = Entry::new("127.0.0.1:9000".parse().unwrap(), &["app"]);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["enabledControllers"], json!(["app"]));
        assert_eq!(v["healthEndpoint"], "http://127.0.0.1:9000/healthz");
        assert_eq!(v["metricsPort"], 9000);
    }
}
