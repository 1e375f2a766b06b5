//! `meta.k8s.io/v1` Table responses (`kubectl get` output) for built-ins and CRD printer columns.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{Flavor, PrinterColumn, Resource};
use crate::request::Ctx;

fn columns(res: &Resource) -> Vec<PrinterColumn> {
    if !res.printer_columns.is_empty() {
        let mut cols = res.printer_columns.clone();
        if res.flavor == Flavor::Custom && !cols.iter().any(|c| c.name == "Name") {
            cols.insert(
                0,
                PrinterColumn {
                    name: "Name".into(),
                    type_: "string".into(),
                    format: "name".into(),
                    description: "Name must be unique within a namespace.".into(),
                    priority: 0,
                    json_path: ".metadata.name".into(),
                },
            );
        }
        return cols;
    }
    vec![
        PrinterColumn { name: "Name".into(), type_: "string".into(), format: "name".into(), description: "Name must be unique within a namespace.".into(), priority: 0, json_path: ".metadata.name".into() },
        PrinterColumn { name: "Age".into(), type_: "date".into(), format: String::new(), description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(), priority: 0, json_path: ".metadata.creationTimestamp".into() },
    ]
}

/// Evaluate a printer-column JSONPath (`.a.b`, `.a[0].b`, `.a[*].b`, `.a[?(@.t=="x")].b`).
pub fn eval_path(obj: &Value, path: &str) -> Vec<Value> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = p.strip_prefix('$').unwrap_or(p);
    let query = if p.starts_with('.') || p.starts_with('[') {
        format!("${p}")
    } else {
        format!("$.{p}")
    };
    match jsonpath_rust::query::js_path_vals(&query, obj) {
        Ok(vals) => vals.into_iter().cloned().collect(),
        Err(_) => Vec::new(),
    }
}

fn cell_of(res: &Resource, col: &PrinterColumn, obj: &Value) -> Value {
    // Built-in computed columns.
    if res.kind == "PodDisruptionBudget" {
        let field = match col.name.as_str() {
            "Min Available" => Some("/spec/minAvailable"),
            "Max Unavailable" => Some("/spec/maxUnavailable"),
            "Allowed Disruptions" => {
                return obj
                    .pointer("/status/disruptionsAllowed")
                    .cloned()
                    .unwrap_or(json!(0));
            }
            _ => None,
        };
        if let Some(f) = field {
            // Upstream prints an unset bound as N/A.
            return match obj.pointer(f) {
                Some(Value::Number(n)) => json!(n.to_string()),
                Some(Value::String(s)) => json!(s),
                _ => json!("N/A"),
            };
        }
    }
    match (res.flavor, col.name.as_str()) {
        (Flavor::ConfigMap, "Data") => {
            let n = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            return json!(n);
        }
        (Flavor::Secret, "Data") => {
            return json!(
                obj.get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            );
        }
        (Flavor::ServiceAccount, "Secrets") => {
            return json!(
                obj.get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, |a| a.len())
            );
        }
        (Flavor::CoreEvent | Flavor::EventsV1, "Object") => {
            let o = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            let kind = o
                .and_then(|o| o.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = o
                .and_then(|o| o.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return json!(format!("{}/{name}", kind.to_lowercase()));
        }
        _ => {}
    }
    let vals = eval_path(obj, &col.json_path);
    let v = match vals.len() {
        0 => return Value::Null,
        1 => vals.into_iter().next().unwrap_or(Value::Null),
        _ => json!(
            vals.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    match (col.type_.as_str(), &v) {
        ("date", Value::String(t)) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => json!(human_duration(
                chrono::Utc::now().signed_duration_since(t).num_seconds()
            )),
            Err(_) => v,
        },
        ("integer", Value::Number(_))
        | ("number", Value::Number(_))
        | ("boolean", Value::Bool(_)) => v,
        ("string", Value::String(_)) => v,
        (_, Value::Object(_) | Value::Array(_)) => json!(v.to_string()),
        (_, Value::String(_)) => v,
        _ => json!(match &v {
            Value::String(s) => s.clone(),
            o => o.to_string(),
        }),
    }
}

pub fn table(
    res: &Resource,
    ctx: &Ctx,
    items: &[Value],
    list_meta: Value,
) -> Result<Value, ApiError> {
    let include = ctx.query.get("includeObject").unwrap_or("Metadata");
    if !matches!(include, "None" | "Metadata" | "Object") {
        return Err(ApiError::bad_request(format!(
            "includeObject must be None, Metadata or Object, not {include:?}"
        )));
    }
    let cols = columns(res);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = cols.iter().map(|c| cell_of(res, c, obj)).collect();
            let object = match include {
                "None" => Value::Null,
                "Object" => obj.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    Ok(
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows}),
    )
}

/// Age as kubectl shows it: coarser as it grows ("45s", "3m20s", "5h", "12d", "2y30d").
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", d / 365, d % 365)
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(86_400 * 3 + 3600), "3d1h");
        assert_eq!(human_duration(86_400 * 400), "400d");
    }

    #[test]
    fn jsonpath_filters() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            eval_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert!(eval_path(&o, ".spec.missing").is_empty());
    }
}
