//! App (`app.rancherdesktop.io/v1alpha1`): the one object a user changes (resources.md §1).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// What the user wants from the desktop: a VM that runs or not, its container engine, and
/// Kubernetes inside it. Cluster-scoped and a singleton named `app`.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "app.rancherdesktop.io",
    version = "v1alpha1",
    kind = "App",
    doc = "The desktop as the user wants it: VM running or not, container engine, Kubernetes. A cluster-scoped singleton named `app`.",
    plural = "apps",
    singular = "app",
    category = "all",
    status = "AppStatus",
    validation = Rule::new("self.metadata.name == 'app'").message("App resource must be named 'app'")
)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Desired VM state: true runs the VM, false stops it.
    pub running: bool,
    /// Namespace holding the App's namespaced objects (LimaVM `rd`, its ConfigMaps, the engine
    /// mirrors). Immutable.
    #[serde(default = "default_namespace")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.namespace is immutable"))]
    pub namespace: String,
    /// The container engine inside the VM.
    #[serde(default = "default_engine")]
    pub container_engine: ContainerEngine,
    /// Kubernetes (k3s) inside the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_engine() -> ContainerEngine {
    ContainerEngine {
        name: EngineName::Moby,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerEngine {
    /// Engine name: `moby` (Docker; the engine controllers mirror it) or `containerd`.
    #[serde(default)]
    pub name: EngineName,
}

impl Default for ContainerEngine {
    fn default() -> Self {
        default_engine()
    }
}

/// Container engine: one of `moby`, `containerd`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineName {
    #[default]
    Moby,
    Containerd,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Kubernetes {
    /// Whether k3s runs in the VM.
    pub enabled: bool,
    /// Bare k3s version such as `1.32.0`, or a channel (`stable`, `latest`, `v1.32`) that the
    /// defaulting webhook resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Observed state of the App.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// Host port meant for the k3s API server; set only while Kubernetes is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_port: Option<i32>,
    /// Conditions (types: Created, Running, ContainerEngineReady, KubernetesReady, Settled;
    /// with ContainersSynced, ImagesSynced, VolumesSynced from the engine controllers). Each
    /// carries the App generation its writer evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}
