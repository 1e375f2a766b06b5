//! Container-engine mirrors (`containers.rancherdesktop.io/v1alpha1`, resources.md §5): Docker
//! objects as API resources, written by the engine controllers with server-side apply.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// A container namespace of the engine (`moby`): metadata only, no spec and no status
/// (resources.md §5.1). kube's `CustomResource` derive always adds a `spec`, so this kind is
/// written by hand: the object is `apiVersion`, `kind` and `metadata`, and its CRD schema has no
/// properties, so anything else a client sends is pruned.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ContainerNamespace {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

impl ContainerNamespace {
    pub const GROUP: &'static str = "containers.rancherdesktop.io";
    pub const VERSION: &'static str = "v1alpha1";
    pub const KIND: &'static str = "ContainerNamespace";
    pub const PLURAL: &'static str = "containernamespaces";

    /// A ContainerNamespace `name` in namespace `ns`.
    pub fn new(name: &str, ns: &str) -> ContainerNamespace {
        ContainerNamespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
        }
    }
}

impl Serialize for ContainerNamespace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ContainerNamespace", 3)?;
        st.serialize_field("apiVersion", &format!("{}/{}", Self::GROUP, Self::VERSION))?;
        st.serialize_field("kind", Self::KIND)?;
        st.serialize_field("metadata", &self.metadata)?;
        st.end()
    }
}

impl kube::Resource for ContainerNamespace {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Self::KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        Self::GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        Self::VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Self::PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl kube::CustomResourceExt for ContainerNamespace {
    fn crd() -> CustomResourceDefinition {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
        let doc =
            "A container namespace of the engine (`moby`); metadata only: no spec, no status.";
        CustomResourceDefinition {
            metadata: ObjectMeta {
                name: Some(Self::crd_name().to_string()),
                ..Default::default()
            },
            spec: ext::CustomResourceDefinitionSpec {
                group: Self::GROUP.into(),
                names: ext::CustomResourceDefinitionNames {
                    categories: Some(vec!["all".into()]),
                    kind: Self::KIND.into(),
                    plural: Self::PLURAL.into(),
                    short_names: Some(Self::shortnames().iter().map(|s| s.to_string()).collect()),
                    singular: Some("containernamespace".into()),
                    ..Default::default()
                },
                scope: "Namespaced".into(),
                versions: vec![ext::CustomResourceDefinitionVersion {
                    name: Self::VERSION.into(),
                    schema: Some(ext::CustomResourceValidation {
                        open_api_v3_schema: Some(ext::JSONSchemaProps {
                            description: Some(doc.into()),
                            title: Some(Self::KIND.into()),
                            type_: Some("object".into()),
                            ..Default::default()
                        }),
                    }),
                    served: true,
                    storage: true,
                    ..Default::default()
                }],
                ..Default::default()
            },
            status: None,
        }
    }
    fn crd_name() -> &'static str {
        "containernamespaces.containers.rancherdesktop.io"
    }
    fn api_resource() -> kube::core::ApiResource {
        kube::core::ApiResource::erase::<ContainerNamespace>(&())
    }
    fn shortnames() -> &'static [&'static str] {
        &["cns"]
    }
}

/// A Docker container, named by its 64-hex-digit ID. Act on it with the
/// `containers.rancherdesktop.io/action` annotation (start, stop, pause, unpause, restart);
/// deleting the mirror removes the container.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "Container",
    doc = "A Docker container mirrored from the engine; act on it with the containers.rancherdesktop.io/action annotation, delete it to remove the container.",
    plural = "containers",
    singular = "container",
    namespaced,
    category = "all",
    status = "ContainerStatus",
    selectable = ".status.namespace",
    printcolumn = r#"{"name":"Running","type":"boolean","jsonPath":".status.conditions[?(@.type==\"Running\")].status"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
pub struct ContainerSpec {}

/// Docker's view of the container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// Docker name without the leading `/`; never empty.
    pub name: String,
    /// Container namespace (the ContainerNamespace name): `moby` unless the Docker name has the
    /// form `/<ns>/<name>`.
    pub namespace: String,
    /// Entrypoint path.
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Image ID the container was created from.
    pub image: String,
    /// Exposed ports, sorted by name; each with its host bindings sorted by (hostIP, hostPort).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Docker state: one of created, running, pausing, paused, restarting, removing, exited,
    /// dead, unknown (any other Docker state is written as unknown).
    #[serde(default)]
    pub status: ContainerStatusValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub finished_at: Option<String>,
    /// Conditions (types: Running, Paused, Restarting, Dead, OOMKilled), written by the
    /// container controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The last action requested through the annotation, and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<ContainerLastAction>,
}

/// Docker container state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatusValue {
    Created,
    Running,
    Pausing,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    #[default]
    Unknown,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// `<port>/<proto>`, e.g. `80/tcp`.
    pub name: String,
    /// Host bindings; absent for an exposed but unpublished port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<PortBinding>,
}

#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct PortBinding {
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    pub host_port: String,
}

/// Action on a container: one of start, stop, pause, unpause, restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerAction {
    Start,
    Stop,
    Pause,
    Unpause,
    Restart,
}

/// Outcome of an action: one of Succeeded, Failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ActionState {
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerLastAction {
    pub action: ContainerAction,
    pub state: ActionState,
    /// Docker's error text, only when Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the controller picked up the annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub observed_at: Option<String>,
    /// When the Docker call returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub completed_at: Option<String>,
}

/// A Docker image: one mirror per tag (`img-` + SHA-256 of id NUL tag), one for a dangling
/// image (`img-` + SHA-256 of id). Deleting a tagged mirror untags only that tag.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "Image",
    doc = "A Docker image tag (or a dangling image) mirrored from the engine; deleting it untags that tag.",
    plural = "images",
    singular = "image",
    namespaced,
    category = "all",
    status = "ImageStatus",
    selectable = ".status.namespace",
    selectable = ".status.id",
    selectable = ".status.repoTag",
    printcolumn = r#"{"name":"Tag","type":"string","jsonPath":".status.repoTag"}"#,
    printcolumn = r#"{"name":"Created","type":"date","jsonPath":".status.createdAt"}"#,
    printcolumn = r#"{"name":"Size","type":"integer","format":"byte","jsonPath":".status.size"}"#
)]
pub struct ImageSpec {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// Container namespace: `moby`.
    pub namespace: String,
    /// Full image ID (`sha256:…`).
    pub id: String,
    /// The one tag this mirror represents; absent for the dangling mirror.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_tag: Option<String>,
    /// Repository digests, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub created_at: Option<String>,
    pub architecture: String,
    pub os: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Conditions: `DeletionBlocked` (True while Docker refuses the removal a delete of this
    /// mirror asked for, e.g. an image in use by a container), written by the image-controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// A Docker volume (`vol-` + SHA-256 of the Docker name). Deleting the mirror removes the
/// volume.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "containers.rancherdesktop.io",
    version = "v1alpha1",
    kind = "Volume",
    doc = "A Docker volume mirrored from the engine; deleting it removes the volume.",
    plural = "volumes",
    singular = "volume",
    namespaced,
    category = "all",
    status = "VolumeStatus",
    selectable = ".status.namespace",
    selectable = ".status.name",
    printcolumn = r#"{"name":"Driver","type":"string","jsonPath":".status.driver"}"#
)]
pub struct VolumeSpec {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// The Docker volume name.
    pub name: String,
    /// Container namespace: `moby`.
    pub namespace: String,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    pub driver: String,
    #[serde(rename = "mountpoint")]
    pub mountpoint: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub scope: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Conditions: `DeletionBlocked` (True while Docker refuses the removal a delete of this
    /// mirror asked for, e.g. a volume in use by a container), written by the volume-controller.
    /// An addition to resources.md §5.4, which lists no conditions for Volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}
