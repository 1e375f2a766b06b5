//! What the server serves: built-in kinds and the kinds of established CRDs, one entry per
//! (group, version, resource). Discovery, OpenAPI, routing and tables are all derived from here,
//! so legacy and aggregated discovery can never disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub const VERBS_ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// How a kind's objects are shaped beyond their schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Namespace,
    ConfigMap,
    Secret,
    ServiceAccount,
    CoreEvent,
    /// events.k8s.io/v1 view of core events (stored as core/v1 Events).
    EventsV1,
    Lease,
    Crd,
    /// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and its bindings.
    Policy,
    PolicyBinding,
    /// admissionregistration.k8s.io/v1 Mutating- and ValidatingWebhookConfiguration.
    WebhookConfig,
    /// Built-ins that are only stored and validated (RBAC, Deployments, DaemonSets, Services):
    /// nothing runs them.
    Stored,
    /// Create-only reviews answered from the request's identity, never stored.
    SelfSubjectReview,
    SelfSubjectAccessReview,
    SelfSubjectRulesReview,
    Custom,
}

#[derive(Clone, Debug)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<&'static str>,
    /// `status` when the kind has a status subresource; `finalize` for namespaces.
    pub subresources: Vec<String>,
    pub flavor: Flavor,
    /// Inlined OpenAPI v3 schema of the whole object (no `$ref`), used for pruning, SSA and
    /// strategic merge.
    pub schema: Option<Arc<Value>>,
    /// `schema`, parsed once (patterns compiled) for pruning, defaulting and validation.
    pub compiled: Option<Arc<rdd_schema::Schema>>,
    /// The CEL rules (`x-kubernetes-validations`) of a CRD version, compiled once.
    pub cel: Option<Arc<crate::cel_rules::CelRules>>,
    /// True for CRD-defined kinds: their schema is authoritative (validation, defaulting).
    pub structural: bool,
    pub printer_columns: Vec<PrinterColumn>,
    /// The key prefix objects of this resource live under (shared by the two Event views).
    pub storage: String,
    /// Whether generation is tracked (custom resources, CRDs).
    pub tracks_generation: bool,
    pub selectable_fields: Vec<String>,
    /// Whether this version is the preferred (first) one of its group.
    pub storage_version: bool,
}

impl Resource {
    /// Attach a schema, parsing it once.
    pub fn with_schema(mut self, schema: Value) -> Resource {
        let (compiled, _) = rdd_schema::Schema::parse_lenient(&schema, "");
        self.compiled = Some(Arc::new(compiled));
        self.schema = Some(Arc::new(schema));
        self
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Storage key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        format!("{}{}/{}", self.storage, namespace, name)
    }

    /// Key prefix of a list (one namespace, or all when `namespace` is empty).
    pub fn prefix(&self, namespace: &str) -> String {
        if self.namespaced && !namespace.is_empty() {
            format!("{}{}/", self.storage, namespace)
        } else {
            self.storage.clone()
        }
    }
}

pub fn storage_prefix(group: &str, plural: &str) -> String {
    format!(
        "/{}/{}/",
        if group.is_empty() { "core" } else { group },
        plural
    )
}

/// An immutable snapshot of everything served; swapped whole when CRDs change.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    /// (group, version, plural) → resource, in a stable order.
    resources: BTreeMap<(String, String, String), Arc<Resource>>,
    /// group → versions in preference order.
    groups: BTreeMap<String, Vec<String>>,
    /// Bumped on every change; feeds discovery ETags and OpenAPI hashes.
    pub generation: u64,
}

impl Registry {
    pub fn new(resources: Vec<Resource>, generation: u64) -> Registry {
        let mut r = Registry {
            generation,
            ..Default::default()
        };
        for res in resources {
            let versions = r.groups.entry(res.group.clone()).or_default();
            if !versions.contains(&res.version) {
                if res.storage_version {
                    versions.insert(0, res.version.clone());
                } else {
                    versions.push(res.version.clone());
                }
            }
            r.resources.insert(
                (res.group.clone(), res.version.clone(), res.plural.clone()),
                Arc::new(res),
            );
        }
        r
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.resources
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|v| v.iter().any(|x| x == version))
    }

    /// Groups (core first as ""), each with its versions in preference order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .groups
            .iter()
            .map(|(g, v)| (g.clone(), v.clone()))
            .collect();
        // Built-in groups before CRD groups is what kube-apiserver does; core always first.
        out.sort_by_key(|(g, _)| (!g.is_empty(), !builtin_group(g), g.clone()));
        out
    }

    pub fn resources_of(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        self.resources
            .values()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources.values()
    }

    /// The resource of a kind in a group/version (used to resolve owner references and events).
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.resources
            .values()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }
}

fn builtin_group(g: &str) -> bool {
    g.is_empty() || g.ends_with(".k8s.io") || !g.contains('.')
}
