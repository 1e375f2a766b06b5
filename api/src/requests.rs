//! Request kinds (resources.md §5.5): schema only; no controller acts on them yet.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;
use crate::containers::Port;

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "ContainerCreateRequest",
    doc = "A request to the engine (ContainerCreateRequest); schema only, no controller acts on it yet.",
    namespaced,
    status = "ContainerCreateRequestStatus",
    selectable = ".spec.namespace",
    annotation("rdd.rancherdesktop.io/controller", "container")
)]
pub struct ContainerCreateRequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// State to create the container in: one of created, running.
    #[serde(default)]
    pub state: RequestedState,
}

/// One of created, running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestedState {
    Created,
    #[default]
    Running,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerCreateRequestStatus {
    pub name: String,
    /// Conditions (types: Complete, Failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Status of a request: conditions Complete and Failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "ImagePullRequest",
    doc = "A request to the engine (ImagePullRequest); schema only, no controller acts on it yet.",
    namespaced,
    status = "RequestStatus",
    selectable = ".spec.namespace",
    annotation("rdd.rancherdesktop.io/controller", "image")
)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullRequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub repo_tag: String,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "ImagePushRequest",
    doc = "A request to the engine (ImagePushRequest); schema only, no controller acts on it yet.",
    namespaced,
    status = "RequestStatus",
    annotation("rdd.rancherdesktop.io/controller", "image")
)]
#[serde(rename_all = "camelCase")]
pub struct ImagePushRequestSpec {
    pub image_ref: String,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "ImageScanRequest",
    doc = "A request to the engine (ImageScanRequest); schema only, no controller acts on it yet.",
    namespaced,
    status = "ImageScanRequestStatus",
    annotation("rdd.rancherdesktop.io/controller", "image")
)]
#[serde(rename_all = "camelCase")]
pub struct ImageScanRequestSpec {
    pub image_ref: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageScanRequestStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Scanner output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "VolumeCreateRequest",
    doc = "A request to the engine (VolumeCreateRequest); schema only, no controller acts on it yet.",
    namespaced,
    status = "RequestStatus",
    annotation("rdd.rancherdesktop.io/controller", "volume")
)]
pub struct VolumeCreateRequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub driver: String,
}
