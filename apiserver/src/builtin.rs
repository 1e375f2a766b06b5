//! Built-in kinds: their registry entries and their OpenAPI schemas.
//!
//! Schemas come from the `k8s-openapi` types (with their upstream descriptions) through
//! `schemars`; the list and patch extensions that those types do not carry are added here for
//! the fields where they change behaviour (strategic merge, server-side apply).

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::registry::{Flavor, PrinterColumn, Resource, VERBS_ALL, storage_prefix};

/// Named schemas (OpenAPI `components.schemas`) plus, for each served kind, its component name.
#[derive(Debug, Default)]
pub struct Schemas {
    pub components: BTreeMap<String, Value>,
    /// (group, version, kind) → component name
    pub roots: BTreeMap<(String, String, String), String>,
}

const REF_PREFIX: &str = "#/components/schemas/";

struct Kind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

fn add<T: JsonSchema>(
    gen_: &mut schemars::SchemaGenerator,
    roots: &mut Vec<(Kind, Value)>,
    k: Kind,
) {
    let s = gen_.subschema_for::<T>();
    roots.push((k, s.to_value()));
}

pub fn schemas() -> Schemas {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut roots = Vec::new();
    let k = |group, version, kind| Kind {
        group,
        version,
        kind,
    };
    add::<Namespace>(&mut generator, &mut roots, k("", "v1", "Namespace"));
    add::<ConfigMap>(&mut generator, &mut roots, k("", "v1", "ConfigMap"));
    add::<Secret>(&mut generator, &mut roots, k("", "v1", "Secret"));
    add::<ServiceAccount>(&mut generator, &mut roots, k("", "v1", "ServiceAccount"));
    add::<Event>(&mut generator, &mut roots, k("", "v1", "Event"));
    add::<k8s_openapi::api::events::v1::Event>(
        &mut generator,
        &mut roots,
        k("events.k8s.io", "v1", "Event"),
    );
    add::<Lease>(
        &mut generator,
        &mut roots,
        k("coordination.k8s.io", "v1", "Lease"),
    );
    {
        use k8s_openapi::api::admissionregistration::v1 as adm;
        use k8s_openapi::api::rbac::v1 as rbac;
        add::<rbac::Role>(
            &mut generator,
            &mut roots,
            k("rbac.authorization.k8s.io", "v1", "Role"),
        );
        add::<rbac::ClusterRole>(
            &mut generator,
            &mut roots,
            k("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        );
        add::<rbac::RoleBinding>(
            &mut generator,
            &mut roots,
            k("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        );
        add::<rbac::ClusterRoleBinding>(
            &mut generator,
            &mut roots,
            k("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        );
        add::<adm::ValidatingWebhookConfiguration>(
            &mut generator,
            &mut roots,
            k(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
            ),
        );
        add::<adm::MutatingWebhookConfiguration>(
            &mut generator,
            &mut roots,
            k(
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
            ),
        );
        add::<k8s_openapi::api::apps::v1::Deployment>(
            &mut generator,
            &mut roots,
            k("apps", "v1", "Deployment"),
        );
        // The chart's docker-gateway runs one pod per node (charts/rdd, templates/gateway.yaml).
        add::<k8s_openapi::api::apps::v1::DaemonSet>(
            &mut generator,
            &mut roots,
            k("apps", "v1", "DaemonSet"),
        );
        add::<k8s_openapi::api::core::v1::Service>(
            &mut generator,
            &mut roots,
            k("", "v1", "Service"),
        );
        add::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(
            &mut generator,
            &mut roots,
            k("policy", "v1", "PodDisruptionBudget"),
        );
    }
    add::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy>(
        &mut generator,
        &mut roots,
        k(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
        ),
    );
    add::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>(
        &mut generator,
        &mut roots,
        k(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
        ),
    );
    add::<CustomResourceDefinition>(
        &mut generator,
        &mut roots,
        k("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
    );
    let defs = generator.take_definitions(true);
    let mut out = Schemas::default();
    for (name, schema) in defs {
        out.components.insert(name, schema);
    }
    for (kind, r) in roots {
        let Some(name) = r
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix(REF_PREFIX))
        else {
            continue;
        };
        if let Some(Value::Object(c)) = out.components.get_mut(name) {
            c.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": kind.group, "version": kind.version, "kind": kind.kind}]),
            );
        }
        out.roots.insert(
            (
                kind.group.to_string(),
                kind.version.to_string(),
                kind.kind.to_string(),
            ),
            name.to_string(),
        );
    }
    for schema in out.components.values_mut() {
        normalize(schema);
    }
    annotate(&mut out.components);
    out
}

/// k8s-openapi marks non-optional Rust fields as required (notably `metadata`); upstream does not.
fn normalize(schema: &mut Value) {
    if let Some(obj) = schema.as_object_mut() {
        if let Some(Value::Array(req)) = obj.get_mut("required") {
            req.retain(|v| v != "metadata" && v != "apiVersion" && v != "kind");
            if req.is_empty() {
                obj.remove("required");
            }
        }
        obj.remove("$schema");
        obj.remove("title");
    }
}

fn set_ext(components: &mut BTreeMap<String, Value>, def: &str, path: &[&str], ext: Value) {
    let Some(mut node) = components.get_mut(def) else {
        return;
    };
    for p in path {
        let Some(next) = node
            .get_mut("properties")
            .and_then(|props| props.get_mut(*p))
        else {
            return;
        };
        node = next;
    }
    if let (Some(obj), Value::Object(e)) = (node.as_object_mut(), ext) {
        for (k, v) in e {
            obj.insert(k, v);
        }
    }
}

fn annotate(c: &mut BTreeMap<String, Value>) {
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    set_ext(
        c,
        meta,
        &["finalizers"],
        json!({"x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"}),
    );
    set_ext(
        c,
        meta,
        &["ownerReferences"],
        json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"],
               "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"}),
    );
    set_ext(
        c,
        meta,
        &["managedFields"],
        json!({"x-kubernetes-list-type": "atomic"}),
    );
    set_ext(
        c,
        "io.k8s.api.core.v1.ServiceAccount",
        &["secrets"],
        json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
               "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"}),
    );
    set_ext(
        c,
        "io.k8s.api.core.v1.NamespaceSpec",
        &["finalizers"],
        json!({"x-kubernetes-list-type": "atomic"}),
    );
    for (def, path) in [
        ("io.k8s.api.core.v1.NamespaceStatus", "conditions"),
        (
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus",
            "conditions",
        ),
    ] {
        set_ext(
            c,
            def,
            &[path],
            json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                   "x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge"}),
        );
    }
    set_ext(
        c,
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec",
        &["versions"],
        json!({"x-kubernetes-list-type": "atomic"}),
    );
    // Port protocols default to TCP (upstream defaulting), which makes them usable map-list keys.
    set_ext(
        c,
        "io.k8s.api.core.v1.ContainerPort",
        &["protocol"],
        json!({"default": "TCP"}),
    );
    set_ext(
        c,
        "io.k8s.api.core.v1.ServicePort",
        &["protocol"],
        json!({"default": "TCP"}),
    );
    // Merge keys of the workload kinds charts use (upstream's patchMergeKey/listMapKeys).
    for (def, field, keys, strategy_key) in [
        (
            "io.k8s.api.core.v1.PodSpec",
            "containers",
            &["name"][..],
            "name",
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "initContainers",
            &["name"][..],
            "name",
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "volumes",
            &["name"][..],
            "name",
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "imagePullSecrets",
            &["name"][..],
            "name",
        ),
        ("io.k8s.api.core.v1.Container", "env", &["name"][..], "name"),
        (
            "io.k8s.api.core.v1.Container",
            "ports",
            &["containerPort", "protocol"][..],
            "containerPort",
        ),
        (
            "io.k8s.api.core.v1.Container",
            "volumeMounts",
            &["mountPath"][..],
            "mountPath",
        ),
        (
            "io.k8s.api.core.v1.ServiceSpec",
            "ports",
            &["port", "protocol"][..],
            "port",
        ),
        (
            "io.k8s.api.apps.v1.DeploymentStatus",
            "conditions",
            &["type"][..],
            "type",
        ),
        (
            "io.k8s.api.apps.v1.DaemonSetStatus",
            "conditions",
            &["type"][..],
            "type",
        ),
        (
            "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
            "conditions",
            &["type"][..],
            "type",
        ),
    ] {
        set_ext(
            c,
            def,
            &[field],
            json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": keys,
                   "x-kubernetes-patch-merge-key": strategy_key, "x-kubernetes-patch-strategy": "merge"}),
        );
    }
    if let Some(Value::Object(o)) = c.get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString") {
        o.clear();
        o.insert("x-kubernetes-int-or-string".into(), json!(true));
        o.insert("format".into(), json!("int-or-string"));
    }
    // JSONSchemaProps and JSON are free-form where they nest (defaults, enums, examples).
    if let Some(Value::Object(o)) =
        c.get_mut("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON")
    {
        o.clear();
        o.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
}

/// Replace every `$ref` with the schema it names; a reference back into its own ancestry (the
/// CRD's recursive JSONSchemaProps) becomes a free-form object, which is all pruning needs there.
pub fn inline(schema: &Value, components: &BTreeMap<String, Value>) -> Value {
    fn go(v: &Value, c: &BTreeMap<String, Value>, stack: &mut Vec<String>) -> Value {
        match v {
            Value::Object(o) => {
                // schemars writes a described reference as {description, allOf: [{$ref}]}.
                if let Some(Value::Array(all)) = o.get("allOf")
                    && all.len() == 1
                    && all[0].get("$ref").is_some()
                {
                    let mut inner = go(&all[0], c, stack);
                    if let (Some(io), Some(d)) = (inner.as_object_mut(), o.get("description")) {
                        io.insert("description".into(), d.clone());
                    }
                    return inner;
                }
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    let name = r.strip_prefix(REF_PREFIX).unwrap_or(r).to_string();
                    if stack.contains(&name) {
                        return json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
                    }
                    let Some(target) = c.get(&name) else {
                        return json!({"x-kubernetes-preserve-unknown-fields": true});
                    };
                    stack.push(name);
                    let mut out = go(target, c, stack);
                    stack.pop();
                    if let (Some(oo), Some(d)) = (out.as_object_mut(), o.get("description")) {
                        oo.insert("description".into(), d.clone());
                    }
                    return out;
                }
                let mut m = Map::new();
                for (k, val) in o {
                    m.insert(k.clone(), go(val, c, stack));
                }
                Value::Object(m)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| go(x, c, stack)).collect()),
            other => other.clone(),
        }
    }
    go(schema, components, &mut Vec::new())
}

// One call per built-in kind reads as a table; a struct literal each would bury it.
#[allow(clippy::too_many_arguments)]
fn res(
    group: &str,
    version: &str,
    plural: &str,
    singular: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    flavor: Flavor,
) -> Resource {
    Resource {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: singular.into(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        verbs: VERBS_ALL.to_vec(),
        subresources: Vec::new(),
        flavor,
        schema: None,
        compiled: None,
        cel: None,
        structural: false,
        printer_columns: Vec::new(),
        storage: storage_prefix(group, plural),
        tracks_generation: false,
        selectable_fields: Vec::new(),
        storage_version: true,
    }
}

fn col(
    name: &str,
    type_: &str,
    json_path: &str,
    priority: i64,
    description: &str,
) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: if name == "Name" {
            "name".into()
        } else {
            String::new()
        },
        description: description.into(),
        priority,
        json_path: json_path.into(),
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.";
const AGE_DESC: &str =
    "CreationTimestamp is a timestamp representing the server time when this object was created.";

/// Every built-in resource, with schemas attached.
pub fn resources(schemas: &Schemas) -> Vec<Resource> {
    let mut namespaces = res(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        Flavor::Namespace,
    );
    namespaces.subresources = vec!["status".into(), "finalize".into()];
    namespaces.verbs = vec![
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    namespaces.printer_columns = vec![
        col("Name", "string", ".metadata.name", 0, NAME_DESC),
        col(
            "Status",
            "string",
            ".status.phase",
            0,
            "The phase of the namespace",
        ),
        col("Age", "date", ".metadata.creationTimestamp", 0, AGE_DESC),
    ];
    let mut configmaps = res(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        Flavor::ConfigMap,
    );
    configmaps.printer_columns = vec![
        col("Name", "string", ".metadata.name", 0, NAME_DESC),
        col("Data", "string", "", 0, "Number of data entries"),
        col("Age", "date", ".metadata.creationTimestamp", 0, AGE_DESC),
    ];
    let mut secrets = res(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        &[],
        Flavor::Secret,
    );
    secrets.printer_columns = vec![
        col("Name", "string", ".metadata.name", 0, NAME_DESC),
        col("Type", "string", ".type", 0, "The type of the secret"),
        col("Data", "string", "", 0, "Number of data entries"),
        col("Age", "date", ".metadata.creationTimestamp", 0, AGE_DESC),
    ];
    let mut sas = res(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        Flavor::ServiceAccount,
    );
    sas.printer_columns = vec![
        col("Name", "string", ".metadata.name", 0, NAME_DESC),
        col("Secrets", "string", "", 0, "Number of secrets"),
        col("Age", "date", ".metadata.creationTimestamp", 0, AGE_DESC),
    ];
    let mut events = res(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        Flavor::CoreEvent,
    );
    events.printer_columns = vec![
        col(
            "Last Seen",
            "string",
            ".lastTimestamp",
            0,
            "Time of the last occurrence",
        ),
        col("Type", "string", ".type", 0, "Type of this event"),
        col("Reason", "string", ".reason", 0, "Why the action was taken"),
        col("Object", "string", "", 0, "The object this event is about"),
        col(
            "Message",
            "string",
            ".message",
            0,
            "A description of the event",
        ),
    ];
    let mut events_v1 = res(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        Flavor::EventsV1,
    );
    events_v1.storage = storage_prefix("", "events");
    events_v1.printer_columns = events.printer_columns.clone();
    let mut leases = res(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        Flavor::Lease,
    );
    leases.printer_columns = vec![
        col("Name", "string", ".metadata.name", 0, NAME_DESC),
        col(
            "Holder",
            "string",
            ".spec.holderIdentity",
            0,
            "The holder of the lease",
        ),
        col("Age", "date", ".metadata.creationTimestamp", 0, AGE_DESC),
    ];
    let mut crds = res(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        Flavor::Crd,
    );
    crds.subresources = vec!["status".into()];
    crds.tracks_generation = true;
    crds.categories = vec!["api-extensions".into()];
    crds.printer_columns = vec![
        col("Name", "string", ".metadata.name", 0, NAME_DESC),
        col(
            "Created At",
            "date",
            ".metadata.creationTimestamp",
            0,
            AGE_DESC,
        ),
    ];
    let mut vaps = res(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "validatingadmissionpolicy",
        "ValidatingAdmissionPolicy",
        false,
        &[],
        Flavor::Policy,
    );
    vaps.subresources = vec!["status".into()];
    vaps.tracks_generation = true;
    vaps.categories = vec!["api-extensions".into()];
    let mut vapbs = res(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "validatingadmissionpolicybinding",
        "ValidatingAdmissionPolicyBinding",
        false,
        &[],
        Flavor::PolicyBinding,
    );
    vapbs.categories = vec!["api-extensions".into()];
    vapbs.tracks_generation = true;
    // Stored and validated, not run: enough for charts and deploy/ manifests to install.
    let mut stored = Vec::new();
    for (group, plural, singular, kind, namespaced, short) in [
        (
            "rbac.authorization.k8s.io",
            "roles",
            "role",
            "Role",
            true,
            &[][..],
        ),
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            "clusterrole",
            "ClusterRole",
            false,
            &[][..],
        ),
        (
            "rbac.authorization.k8s.io",
            "rolebindings",
            "rolebinding",
            "RoleBinding",
            true,
            &[][..],
        ),
        (
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "clusterrolebinding",
            "ClusterRoleBinding",
            false,
            &[][..],
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            "ValidatingWebhookConfiguration",
            false,
            &[][..],
        ),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            "MutatingWebhookConfiguration",
            false,
            &[][..],
        ),
        (
            "apps",
            "deployments",
            "deployment",
            "Deployment",
            true,
            &["deploy"][..],
        ),
        (
            "apps",
            "daemonsets",
            "daemonset",
            "DaemonSet",
            true,
            &["ds"][..],
        ),
        ("", "services", "service", "Service", true, &["svc"][..]),
        (
            "policy",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            true,
            &["pdb"][..],
        ),
    ] {
        let mut r = res(
            group,
            "v1",
            plural,
            singular,
            kind,
            namespaced,
            short,
            Flavor::Stored,
        );
        if matches!(
            kind,
            "Deployment" | "DaemonSet" | "Service" | "PodDisruptionBudget"
        ) {
            r.subresources = vec!["status".into()];
        }
        if kind == "PodDisruptionBudget" {
            // As upstream's table: the budget and what the (absent) disruption controller
            // would allow.
            r.tracks_generation = true;
            r.printer_columns = vec![
                col("Name", "string", ".metadata.name", 0, NAME_DESC),
                col(
                    "Min Available",
                    "string",
                    ".spec.minAvailable",
                    0,
                    "The minimum number of pods that must be available",
                ),
                col(
                    "Max Unavailable",
                    "string",
                    ".spec.maxUnavailable",
                    0,
                    "The maximum number of pods that may be unavailable",
                ),
                col(
                    "Allowed Disruptions",
                    "integer",
                    ".status.disruptionsAllowed",
                    0,
                    "Number of pod disruptions that are currently allowed",
                ),
                col("Age", "date", ".metadata.creationTimestamp", 0, AGE_DESC),
            ];
        }
        if kind.ends_with("WebhookConfiguration") {
            r.flavor = Flavor::WebhookConfig;
        }
        if matches!(kind, "Deployment" | "DaemonSet") {
            r.tracks_generation = true;
            r.categories = vec!["all".into()];
        }
        stored.push(r);
    }
    let mut reviews = Vec::new();
    for (group, plural, kind, flavor) in [
        (
            "authentication.k8s.io",
            "selfsubjectreviews",
            "SelfSubjectReview",
            Flavor::SelfSubjectReview,
        ),
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            Flavor::SelfSubjectAccessReview,
        ),
        (
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            Flavor::SelfSubjectRulesReview,
        ),
    ] {
        let mut r = res(group, "v1", plural, "", kind, false, &[], flavor);
        r.verbs = vec!["create"];
        reviews.push(r);
    }
    let all = vec![
        namespaces, configmaps, secrets, sas, events, events_v1, leases, crds, vaps, vapbs,
    ];
    let all: Vec<Resource> = all.into_iter().chain(stored).chain(reviews).collect();
    all.into_iter()
        .map(|r| {
            let key = (r.group.clone(), r.version.clone(), r.kind.clone());
            match schemas
                .roots
                .get(&key)
                .and_then(|n| schemas.components.get(n))
            {
                Some(s) => r.with_schema(inline(s, &schemas.components)),
                None => r,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_carry_patch_and_list_extensions() {
        let s = schemas();
        let all = resources(&s);
        let cm = all.iter().find(|r| r.kind == "ConfigMap").unwrap();
        let schema = cm.schema.as_ref().unwrap();
        let owners = &schema["properties"]["metadata"]["properties"]["ownerReferences"];
        assert_eq!(owners["x-kubernetes-patch-merge-key"], "uid");
        assert_eq!(owners["x-kubernetes-list-map-keys"], json!(["uid"]));
        assert_eq!(
            schema["properties"]["data"]["additionalProperties"]["type"],
            "string"
        );
        assert!(schema.get("required").is_none());
        let crd = all
            .iter()
            .find(|r| r.kind == "CustomResourceDefinition")
            .unwrap();
        assert!(
            crd.schema.as_ref().unwrap()["properties"]["spec"]["properties"]["versions"]
                .is_object()
        );
        assert!(
            s.roots
                .contains_key(&("events.k8s.io".into(), "v1".into(), "Event".into()))
        );
    }
}
