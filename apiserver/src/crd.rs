//! CustomResourceDefinitions: validation, status (names accepted, established), and the
//! registry entries of the kinds they define.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::meta::{self, meta_mut};
use crate::registry::{Flavor, PrinterColumn, Resource, VERBS_ALL, storage_prefix};
use crate::server::State;

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const CRD_PREFIX: &str = "/apiextensions.k8s.io/customresourcedefinitions/";

fn cause(field: &str, reason: &str, msg: String) -> Cause {
    Cause {
        reason: reason.into(),
        field: field.into(),
        message: msg,
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn validate(state: &State, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let group = s(obj, "/spec/group");
    let plural = s(obj, "/spec/names/plural");
    let kind = s(obj, "/spec/names/kind");
    let name = meta::name(obj);
    if group.is_empty() {
        out.push(cause(
            "spec.group",
            "FieldValueRequired",
            "Required value".into(),
        ));
    } else if !group.contains('.') || meta::dns1123_subdomain(group).is_some() {
        out.push(cause(
            "spec.group",
            "FieldValueInvalid",
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() {
        out.push(cause(
            "spec.names.plural",
            "FieldValueRequired",
            "Required value".into(),
        ));
    } else if meta::dns1123_label(plural).is_some() {
        out.push(cause(
            "spec.names.plural",
            "FieldValueInvalid",
            format!("Invalid value: \"{plural}\": a lowercase RFC 1123 label is required"),
        ));
    }
    if kind.is_empty() {
        out.push(cause(
            "spec.names.kind",
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        out.push(cause(
            "metadata.name",
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = s(obj, "/spec/scope");
    if !matches!(scope, "Namespaced" | "Cluster") {
        out.push(cause(
            "spec.scope",
            "FieldValueNotSupported",
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    if let Some(old) = old
        && s(old, "/spec/scope") != scope
    {
        out.push(cause(
            "spec.scope",
            "FieldValueInvalid",
            "Invalid value: field is immutable".into(),
        ));
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        out.push(cause(
            "spec.versions",
            "FieldValueInvalid",
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .count();
    if storage != 1 && !versions.is_empty() {
        out.push(cause(
            "spec.versions",
            "FieldValueInvalid",
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    if !versions.is_empty()
        && !versions
            .iter()
            .any(|v| v.get("served") == Some(&json!(true)))
    {
        out.push(cause(
            "spec.versions",
            "FieldValueInvalid",
            "Invalid value: must have at least one version marked as served".into(),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let vname = s(v, "/name");
        if meta::dns1123_label(vname).is_some() {
            out.push(cause(
                &format!("spec.versions[{i}].name"),
                "FieldValueInvalid",
                format!("Invalid value: \"{vname}\": a DNS-1035 label is required"),
            ));
        }
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        match v.pointer("/schema/openAPIV3Schema") {
            None => out.push(cause(
                &path,
                "FieldValueRequired",
                "Required value: schemas are required".into(),
            )),
            Some(schema) => {
                if crate::cel_rules::has_rules(schema) {
                    cel_errors(&kube_cel::compile_schema(schema), &path, &mut out);
                    out.extend(crate::celcheck::check_schema(schema, &path));
                }
                for e in rdd_schema::check_structural(schema, &path) {
                    out.push(Cause {
                        reason: e.reason.to_string(),
                        message: e.body(),
                        field: e.field.clone(),
                    });
                }
            }
        }
    }
    // Another CRD must not already serve the same kind under another name.
    let _ = state;
    out
}

fn accepted_names(obj: &Value) -> Value {
    let mut names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let kind = s(obj, "/spec/names/kind").to_string();
    if names
        .get("singular")
        .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
    {
        names["singular"] = json!(kind.to_lowercase());
    }
    if names
        .get("listKind")
        .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
    {
        names["listKind"] = json!(format!("{kind}List"));
    }
    names
}

fn conditions(now: &str, terminating: bool) -> Value {
    let mut c = vec![
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}),
    ];
    if terminating {
        c.push(json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress", "message": "CustomResource deletion is in progress", "lastTransitionTime": now}));
    }
    Value::Array(c)
}

fn storage_version(obj: &Value) -> Option<String> {
    obj.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("storage") == Some(&json!(true)))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Defaults the API server sets on a new CRD, and its status.
pub fn on_create(_state: &State, obj: &mut Value) -> Result<(), ApiError> {
    let mut fins = meta::finalizers(obj);
    if !fins.iter().any(|f| f == CLEANUP_FINALIZER) {
        fins.push(CLEANUP_FINALIZER.into());
    }
    meta_mut(obj).insert("finalizers".into(), json!(fins));
    let now = meta::now();
    obj["status"] = json!({
        "acceptedNames": accepted_names(obj),
        "conditions": conditions(&now, false),
        "storedVersions": storage_version(obj).into_iter().collect::<Vec<_>>(),
    });
    Ok(())
}

pub fn on_update(_state: &State, next: &mut Value, old: &Value) -> Result<(), ApiError> {
    let mut status = old.get("status").cloned().unwrap_or(json!({}));
    status["acceptedNames"] = accepted_names(next);
    let mut stored: Vec<Value> = status
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = storage_version(next)
        && !stored.contains(&json!(v))
    {
        stored.push(json!(v));
    }
    status["storedVersions"] = Value::Array(stored);
    let terminating = meta::meta_str(next, "deletionTimestamp").is_some();
    let had_terminating = status
        .get("conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|x| x["type"] == "Terminating"));
    if terminating && !had_terminating {
        status["conditions"] = conditions(&meta::now(), true);
    }
    next["status"] = status;
    Ok(())
}

/// The registry entries of every CRD in storage.
pub async fn served_resources(state: &State) -> Result<Vec<Resource>, ApiError> {
    let (rows, _, _) = state.store.list(CRD_PREFIX, 0, None, 0).await?;
    let meta_schema = state
        .schemas
        .components
        .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .map(|s| crate::builtin::inline(s, &state.schemas.components));
    let mut out = Vec::new();
    for row in rows {
        out.extend(resources_of(&row.value, meta_schema.as_ref()));
    }
    Ok(out)
}

/// Rules that do not compile, with the schema path they sit at.
fn cel_errors(c: &kube_cel::CompiledSchema, path: &str, out: &mut Vec<Cause>) {
    for e in c.compilation_errors() {
        out.push(cause(
            &format!("{path}.x-kubernetes-validations"),
            "FieldValueInvalid",
            format!("Invalid value: compilation failed: {e}"),
        ));
    }
    for (name, child) in &c.properties {
        cel_errors(child, &format!("{path}.properties[{name}]"), out);
    }
    if let Some(items) = &c.items {
        cel_errors(items, &format!("{path}.items"), out);
    }
    if let Some(ap) = &c.additional_properties {
        cel_errors(ap, &format!("{path}.additionalProperties"), out);
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn resources_of(crd: &Value, meta_schema: Option<&Value>) -> Vec<Resource> {
    let group = s(crd, "/spec/group").to_string();
    let names = accepted_names(crd);
    let plural = s(&names, "/plural").to_string();
    let kind = s(&names, "/kind").to_string();
    let namespaced = s(crd, "/spec/scope") == "Namespaced";
    let mut out = Vec::new();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("served") != Some(&json!(true)) {
            continue;
        }
        let mut schema = v
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or(json!({"type": "object"}));
        if let (Some(ms), Some(props)) = (
            meta_schema,
            schema
                .as_object_mut()
                .map(|o| o.entry("properties").or_insert_with(|| json!({}))),
        ) && let Some(p) = props.as_object_mut()
        {
            p.insert("metadata".into(), ms.clone());
            p.entry("apiVersion")
                .or_insert_with(|| json!({"type": "string"}));
            p.entry("kind").or_insert_with(|| json!({"type": "string"}));
        }
        // Only versions that carry rules pay for CEL at write time.
        let cel = crate::cel_rules::CelRules::compile(&schema).map(Arc::new);
        let mut subresources = Vec::new();
        if v.pointer("/subresources/status").is_some() {
            subresources.push("status".to_string());
        }
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: s(c, "/name").into(),
                        type_: s(c, "/type").into(),
                        format: s(c, "/format").into(),
                        description: s(c, "/description").into(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: s(c, "/jsonPath").into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let selectable_fields = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|f| s(f, "/jsonPath").to_string()).collect())
            .unwrap_or_default();
        out.push(
            Resource {
                group: group.clone(),
                version: s(v, "/name").into(),
                plural: plural.clone(),
                singular: s(&names, "/singular").into(),
                kind: kind.clone(),
                namespaced,
                short_names: strings(names.get("shortNames")),
                categories: strings(names.get("categories")),
                verbs: VERBS_ALL.to_vec(),
                subresources,
                flavor: Flavor::Custom,
                schema: None,
                compiled: None,
                cel: cel.clone(),
                structural: true,
                printer_columns,
                storage: storage_prefix(&group, &plural),
                tracks_generation: true,
                selectable_fields,
                storage_version: v.get("storage") == Some(&json!(true)),
            }
            .with_schema(schema),
        );
    }
    out
}
