//! LimaVM (`lima.rancherdesktop.io/v1alpha1`): one Lima instance (resources.md §2).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// A Lima VM created from a template ConfigMap. Names are unique across all namespaces.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "lima.rancherdesktop.io",
    version = "v1alpha1",
    kind = "LimaVM",
    doc = "A Lima VM created from a template ConfigMap; names are unique across all namespaces.",
    plural = "limavms",
    singular = "limavm",
    namespaced,
    category = "all",
    status = "LimaVMStatus",
    printcolumn = r#"{"name":"Running","type":"boolean","jsonPath":".spec.running"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LimaVMSpec {
    /// The ConfigMap (key `template`) the VM is created from; read once, at admission.
    /// Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("templateRef is immutable"))]
    pub template_ref: TemplateRef,
    /// Desired run state.
    #[serde(default)]
    pub running: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateRef {
    /// Name of a ConfigMap holding the Lima template under key `template`.
    pub name: String,
    /// Namespace of that ConfigMap; the LimaVM's own namespace when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Observed state of the VM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimaVMStatus {
    /// Name of the validated template copy (`<name>-template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_config_map: Option<String>,
    /// resourceVersion of the template copy last applied to the instance on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_template_resource_version: Option<String>,
    /// A restart was requested (annotation or template change) and not carried out yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_needed: bool,
    /// Times the VM reached Running=True/Started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: i32,
    /// Conditions (types: Created, Running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}
