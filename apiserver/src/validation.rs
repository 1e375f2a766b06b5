//! Built-in validation and preparation: metadata rules every kind shares, and the per-kind rules
//! of the built-ins.

use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::meta::{self, meta_mut};
use crate::registry::{Flavor, Resource};
use crate::server::State;

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        field: field.into(),
        message,
    }
}

/// Per-kind normalization before validation (defaults the server owns).
pub fn prepare(res: &Resource, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    match res.flavor {
        Flavor::Namespace => {
            expect_object_or_absent(res, obj, "spec", "NamespaceSpec")?;
            if old.is_none() {
                if obj.pointer("/spec/finalizers").is_none() {
                    obj["spec"]["finalizers"] = json!(["kubernetes"]);
                }
                obj["status"] = json!({"phase": "Active"});
            }
            let m = meta_mut(obj);
            let name = m.get("name").cloned().unwrap_or(json!(""));
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), name);
            }
        }
        Flavor::Secret => {
            use base64::Engine;
            expect_object_or_absent(res, obj, "data", "map[string][]byte")?;
            expect_object_or_absent(res, obj, "stringData", "map[string]string")?;
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                for (k, v) in sd {
                    let Some(s) = v.as_str() else {
                        return Err(decode_error(res, &format!("stringData.{k}"), "string", &v));
                    };
                    let encoded = json!(base64::engine::general_purpose::STANDARD.encode(s));
                    if let Some(data) = obj
                        .as_object_mut()
                        .map(|o| o.entry("data").or_insert_with(|| json!({})))
                        .and_then(Value::as_object_mut)
                    {
                        data.insert(k, encoded);
                    }
                }
            }
            if obj.get("type").is_none_or(Value::is_null) {
                obj["type"] = json!(
                    old.and_then(|o| o.get("type"))
                        .cloned()
                        .unwrap_or(json!("Opaque"))
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// The field must be an object (or absent or null): what the built-in Go types decode. Anything
/// else is the decoding error upstream answers with 400, before any defaulting touches it.
fn expect_object_or_absent(
    res: &Resource,
    obj: &Value,
    field: &str,
    go_type: &str,
) -> Result<(), ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(v) => Err(decode_error(res, field, go_type, v)),
    }
}

fn decode_error(res: &Resource, field: &str, want: &str, got: &Value) -> ApiError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: json: cannot unmarshal {got} into Go struct field {}.{field} of type {want}",
        res.kind, res.version, res.kind, res.kind
    ))
}

fn path_segment_name(name: &str) -> Option<String> {
    match name {
        "." => Some("may not be '.'".into()),
        ".." => Some("may not be '..'".into()),
        _ if name.contains('/') => Some("may not contain '/'".into()),
        _ if name.contains('%') => Some("may not contain '%'".into()),
        _ => None,
    }
}

pub fn validate_meta(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let name = meta::name(obj);
    let name_err = if res.flavor == Flavor::Namespace {
        meta::dns1123_label(name)
    } else if res.group == crate::authz::index::GROUP {
        // RBAC names only have to be path segments: upstream's own are `system:discovery`.
        path_segment_name(name)
    } else {
        meta::dns1123_subdomain(name)
    };
    if name.is_empty() {
        out.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required".into(),
        ));
    } else if let Some(e) = name_err {
        out.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": {e}"),
        ));
    }
    if let Some(labels) = meta::labels(obj) {
        for (k, v) in labels {
            if let Some(e) = meta::qualified_name(k) {
                out.push(cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    format!("Invalid value: \"{k}\": {e}"),
                ));
            }
            match v.as_str() {
                Some(s) => {
                    if let Some(e) = meta::label_value(s) {
                        out.push(cause(
                            "FieldValueInvalid",
                            "metadata.labels",
                            format!("Invalid value: \"{s}\": {e}"),
                        ));
                    }
                }
                None => out.push(cause(
                    "FieldValueTypeInvalid",
                    &format!("metadata.labels.{k}"),
                    "Invalid value: must be a string".into(),
                )),
            }
        }
    }
    if let Some(ann) = meta::meta(obj)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in ann {
            if let Some(e) = meta::qualified_name(k) {
                out.push(cause(
                    "FieldValueInvalid",
                    "metadata.annotations",
                    format!("Invalid value: \"{k}\": {e}"),
                ));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            out.push(cause(
                "FieldValueTooLong",
                "metadata.annotations",
                "Too long: must have at most 262144 bytes".into(),
            ));
        }
    }
    if let Some(old) = old {
        let old_fin = meta::finalizers(old);
        if meta::meta_str(old, "deletionTimestamp").is_some() {
            let added: Vec<String> = meta::finalizers(obj)
                .into_iter()
                .filter(|f| !old_fin.contains(f))
                .collect();
            if !added.is_empty() {
                out.push(cause("FieldValueForbidden", "metadata.finalizers", format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}")));
            }
        }
    }
    for f in meta::finalizers(obj) {
        if let Some(e) = meta::qualified_name(&f) {
            out.push(cause(
                "FieldValueInvalid",
                "metadata.finalizers",
                format!("Invalid value: \"{f}\": {e}"),
            ));
        }
    }
    out
}

pub fn validate_kind(
    state: &State,
    res: &Resource,
    obj: &Value,
    old: Option<&Value>,
) -> Vec<Cause> {
    let mut out = Vec::new();
    match res.flavor {
        Flavor::ConfigMap | Flavor::Secret => {
            for field in ["data", "binaryData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        let ok = !k.is_empty()
                            && k.len() <= 253
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                            && k != "."
                            && k != "..";
                        if !ok {
                            out.push(cause("FieldValueInvalid", &format!("{field}[{k}]"), format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")));
                        }
                    }
                }
            }
            if let Some(old) = old {
                if old.get("immutable") == Some(&json!(true)) {
                    for field in ["data", "binaryData", "immutable"] {
                        if old.get(field) != obj.get(field) {
                            out.push(cause(
                                "FieldValueForbidden",
                                field,
                                "Forbidden: field is immutable when `immutable` is set".into(),
                            ));
                        }
                    }
                }
                if res.flavor == Flavor::Secret && old.get("type") != obj.get("type") {
                    out.push(cause(
                        "FieldValueInvalid",
                        "type",
                        "Invalid value: field is immutable".into(),
                    ));
                }
            }
            if res.flavor == Flavor::Secret {
                use base64::Engine;
                if let Some(m) = obj.get("data").and_then(Value::as_object) {
                    for (k, v) in m {
                        let ok = v.as_str().is_some_and(|s| {
                            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                        });
                        if !ok {
                            out.push(cause(
                                "FieldValueInvalid",
                                &format!("data[{k}]"),
                                "Invalid value: must be base64 encoded".into(),
                            ));
                        }
                    }
                }
            }
        }
        Flavor::Crd => out.extend(crate::crd::validate(state, obj, old)),
        Flavor::Stored if res.kind == "PodDisruptionBudget" => out.extend(pdb(obj)),
        _ => {}
    }
    // Built-in objects are checked against their published schema's types, so a wrong type
    // cannot be stored and break typed clients later.
    if !res.structural
        && let Some(s) = &res.compiled
    {
        for e in s.validate(obj) {
            if e.reason == "FieldValueTypeInvalid" {
                out.push(Cause {
                    reason: e.reason.to_string(),
                    message: e.body(),
                    field: e.field.clone(),
                });
            }
        }
    }
    out
}

/// An int-or-string bound of a PodDisruptionBudget: a non-negative integer or a percentage of
/// at most 100 (upstream's ValidatePositiveIntOrPercent and IsNotMoreThan100Percent).
fn int_or_percent(v: &Value, field: &str, out: &mut Vec<Cause>) {
    match v {
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => out.push(cause(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {n}: must be greater than or equal to 0"),
        )),
        Value::Number(_) => {}
        Value::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            match digits.map(|d| d.parse::<u64>()) {
                Some(Ok(p)) if p > 100 => out.push(cause(
                    "FieldValueInvalid",
                    field,
                    format!("Invalid value: \"{s}\": must not be greater than 100%"),
                )),
                Some(Ok(_)) => {}
                _ => out.push(cause(
                    "FieldValueInvalid",
                    field,
                    format!("Invalid value: \"{s}\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
                )),
            }
        }
        _ => {}
    }
}

/// policy/v1 PodDisruptionBudget spec rules (upstream `ValidatePodDisruptionBudgetSpec`).
fn pdb(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        out.push(cause(
            "FieldValueInvalid",
            "spec",
            "Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
        ));
    }
    if let Some(v) = min {
        int_or_percent(v, "spec.minAvailable", &mut out);
    }
    if let Some(v) = max {
        int_or_percent(v, "spec.maxUnavailable", &mut out);
    }
    if let Some(sel) = spec.get("selector").filter(|s| s.is_object()) {
        for (i, e) in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = format!("spec.selector.matchExpressions[{i}]");
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" | "NotIn" if values == 0 => out.push(cause(
                    "FieldValueRequired",
                    &format!("{field}.values"),
                    "Required value: must be specified when `operator` is 'In' or 'NotIn'".into(),
                )),
                "Exists" | "DoesNotExist" if values > 0 => out.push(cause(
                    "FieldValueForbidden",
                    &format!("{field}.values"),
                    "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into(),
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                op => out.push(cause(
                    "FieldValueNotSupported",
                    &format!("{field}.operator"),
                    format!("Unsupported value: \"{op}\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""),
                )),
            }
            if let Some(k) = e.get("key").and_then(Value::as_str)
                && let Some(err) = meta::qualified_name(k)
            {
                out.push(cause(
                    "FieldValueInvalid",
                    &format!("{field}.key"),
                    format!("Invalid value: \"{k}\": {err}"),
                ));
            }
        }
        for (k, v) in sel
            .get("matchLabels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let bad = meta::qualified_name(k).or_else(|| v.as_str().and_then(meta::label_value));
            if let Some(err) = bad {
                out.push(cause(
                    "FieldValueInvalid",
                    "spec.selector.matchLabels",
                    format!("Invalid value: \"{k}\": {err}"),
                ));
            }
        }
    }
    if let Some(p) = spec
        .get("unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        && !matches!(p, "IfHealthyBudget" | "AlwaysAllow")
    {
        out.push(cause(
            "FieldValueNotSupported",
            "spec.unhealthyPodEvictionPolicy",
            format!(
                "Unsupported value: \"{p}\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""
            ),
        ));
    }
    out
}

#[cfg(test)]
mod pdb_tests {
    use super::*;

    fn fields(spec: Value) -> Vec<String> {
        pdb(&json!({"spec": spec}))
            .into_iter()
            .map(|c| c.field)
            .collect()
    }

    #[test]
    fn pod_disruption_budget_rules() {
        assert!(
            fields(json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}))
                .is_empty()
        );
        assert!(
            fields(json!({"maxUnavailable": "25%", "unhealthyPodEvictionPolicy": "AlwaysAllow"}))
                .is_empty()
        );
        assert!(fields(json!({"minAvailable": "100%"})).is_empty());
        assert_eq!(
            fields(json!({"minAvailable": 1, "maxUnavailable": 1})),
            ["spec"]
        );
        assert_eq!(fields(json!({"minAvailable": -1})), ["spec.minAvailable"]);
        assert_eq!(
            fields(json!({"maxUnavailable": "150%"})),
            ["spec.maxUnavailable"]
        );
        assert_eq!(
            fields(json!({"maxUnavailable": "half"})),
            ["spec.maxUnavailable"]
        );
        assert_eq!(
            fields(json!({"maxUnavailable": "%"})),
            ["spec.maxUnavailable"]
        );
        assert_eq!(
            fields(json!({"selector": {"matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c", "operator": "Near"}]}})),
            [
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator"
            ]
        );
        assert_eq!(
            fields(json!({"unhealthyPodEvictionPolicy": "Sometimes"})),
            ["spec.unhealthyPodEvictionPolicy"]
        );
    }
}
