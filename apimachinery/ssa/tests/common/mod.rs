#![allow(dead_code)]

use rdd_ssa::{ApplyOutcome, ManagedFieldsEntry, Scope, SsaError, apply, update};
use serde_json::{Value, json};

pub const T0: &str = "2024-01-01T00:00:00Z";
pub const T1: &str = "2024-01-01T00:01:00Z";
pub const T2: &str = "2024-01-01T00:02:00Z";

/// A CRD-style schema exercising every list/map flavour.
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "finalizers": {"type": "array", "items": {"type": "string"},
                               "x-kubernetes-patch-strategy": "merge"}
            }},
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "image": {"type": "string"},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "port": {"type": "integer"}
                    }}
                },
                "args": {"type": "array", "items": {"type": "string"}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set",
                         "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {
                "phase": {"type": "string"},
                "conditions": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {
                        "type": {"type": "string"},
                        "status": {"type": "string"}
                    }}
                }
            }}
        }
    })
}

pub fn obj(body: Value) -> Value {
    let mut base = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"}
    });
    if let (Some(b), Value::Object(extra)) = (base.as_object_mut(), body) {
        for (k, v) in extra {
            if k == "metadata" {
                if let (Some(Value::Object(m)), Value::Object(em)) = (b.get_mut("metadata"), v) {
                    m.extend(em);
                }
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

pub fn apply_as(
    live: Option<&Value>,
    config: &Value,
    managed: &[ManagedFieldsEntry],
    manager: &str,
    force: bool,
    now: &str,
) -> Result<ApplyOutcome, SsaError> {
    let s = schema();
    apply(
        live,
        config,
        managed,
        manager,
        "example.com/v1",
        None,
        Scope::All,
        force,
        Some(&s),
        now,
    )
}

pub fn update_as(
    old: Option<&Value>,
    new: &Value,
    managed: &[ManagedFieldsEntry],
    manager: &str,
    now: &str,
) -> Vec<ManagedFieldsEntry> {
    let s = schema();
    update(
        old,
        new,
        managed,
        manager,
        "example.com/v1",
        None,
        Scope::All,
        Some(&s),
        now,
    )
}

/// Member paths of `manager`'s entry (any operation), or empty.
pub fn owned(managed: &[ManagedFieldsEntry], manager: &str) -> Vec<String> {
    managed
        .iter()
        .filter(|e| e.manager == manager)
        .flat_map(|e| e.field_set().unwrap().paths())
        .collect()
}

pub fn managers(managed: &[ManagedFieldsEntry]) -> Vec<String> {
    managed.iter().map(|e| e.manager.clone()).collect()
}
