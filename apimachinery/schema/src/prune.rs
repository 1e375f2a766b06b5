//! Pruning of unknown fields and defaulting, following the upstream
//! algorithms for structural schemas.

use crate::schema::{AdditionalProperties, Schema};
use serde_json::Value;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Builds unknown-field paths as upstream does: `a.b[0].c`.
struct PathTracker {
    parts: Vec<String>,
    pruned: Vec<String>,
}

impl PathTracker {
    fn push_key(&mut self, k: &str) {
        if self.parts.is_empty() {
            self.parts.push(k.to_string());
        } else {
            self.parts.push(format!(".{k}"));
        }
    }
    fn push_index(&mut self, i: usize) {
        self.parts.push(format!("[{i}]"));
    }
    fn pop(&mut self) {
        self.parts.pop();
    }
    fn record(&mut self, k: &str) {
        self.push_key(k);
        self.pruned.push(self.parts.concat());
        self.pop();
    }
}

/// Prunes `obj` in place; `is_resource_root` makes the node behave as an
/// embedded resource (type meta and metadata kept). Returns sorted paths.
pub(crate) fn prune_value(schema: &Schema, obj: &mut Value, is_resource_root: bool) -> Vec<String> {
    let mut t = PathTracker {
        parts: Vec::new(),
        pruned: Vec::new(),
    };
    prune_node(obj, Some(schema), is_resource_root, &mut t);
    t.pruned.sort();
    t.pruned
}

/// The schema for an additionalProperties value; `true` has no schema, so
/// upstream prunes everything below such a value.
fn additional(s: &Schema) -> Option<Option<&Schema>> {
    match &s.additional_properties {
        None => None,
        Some(AdditionalProperties::Schema(sub)) => Some(Some(sub)),
        Some(AdditionalProperties::Bool(_)) => Some(None),
    }
}

fn prune_node(x: &mut Value, s: Option<&Schema>, embedded_override: bool, t: &mut PathTracker) {
    if let Some(s) = s
        && s.preserves_unknown_fields()
    {
        skip_prune(x, s, embedded_override, t);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    t.record(&k);
                }
                m.clear();
                return;
            };
            let embedded = s.x_embedded_resource || embedded_override;
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(prop) = s.property(&k) {
                    t.push_key(&k);
                    if let Some(v) = m.get_mut(&k) {
                        prune_node(v, Some(prop), false, t);
                    }
                    t.pop();
                } else if let Some(sub) = additional(s) {
                    t.push_key(&k);
                    if let Some(v) = m.get_mut(&k) {
                        prune_node(v, sub, false, t);
                    }
                    t.pop();
                } else {
                    // Type meta at the very root is kept silently upstream
                    // even when the schema is not marked embedded.
                    if !META_FIELDS.contains(&k.as_str()) || !t.parts.is_empty() {
                        t.record(&k);
                    }
                    m.shift_remove(&k);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                t.push_index(i);
                prune_node(v, item_schema, false, t);
                t.pop();
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`, unknown fields stay but
/// known ones are still pruned according to their own schema.
fn skip_prune(x: &mut Value, s: &Schema, embedded_override: bool, t: &mut PathTracker) {
    match x {
        Value::Object(m) => {
            let embedded = s.x_embedded_resource || embedded_override;
            for (k, v) in m.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(prop) = s.property(k) {
                    t.push_key(k);
                    prune_node(v, Some(prop), false, t);
                    t.pop();
                } else if let Some(sub) = additional(s) {
                    t.push_key(k);
                    prune_node(v, sub, false, t);
                    t.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    t.push_index(i);
                    skip_prune(v, item, false, t);
                    t.pop();
                }
            }
        }
        _ => {}
    }
}

fn is_non_nullable_null(x: &Value, s: Option<&Schema>) -> bool {
    x.is_null() && s.is_some_and(|s| !s.nullable)
}

/// Removes nulls that are neither nullable nor defaulted, then applies
/// defaults (the order upstream uses, so a null with a default is replaced
/// and one without is dropped).
pub(crate) fn default_value(schema: &Schema, obj: &mut Value) {
    prune_nulls(obj, Some(schema));
    apply_defaults_node(obj, schema);
}

fn field_schema<'a>(s: Option<&'a Schema>, k: &str) -> Option<&'a Schema> {
    let s = s?;
    s.property(k).or_else(|| s.additional_schema())
}

fn prune_nulls(x: &mut Value, s: Option<&Schema>) {
    match x {
        Value::Object(m) => {
            m.retain(|k, v| {
                let fs = field_schema(s, k);
                let drop = v.is_null() && fs.is_some_and(|fs| !fs.nullable && fs.default.is_none());
                if !drop {
                    prune_nulls(v, fs);
                }
                !drop
            });
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            for v in items {
                prune_nulls(v, item);
            }
        }
        _ => {}
    }
}

fn apply_defaults_node(x: &mut Value, s: &Schema) {
    match x {
        Value::Object(m) => {
            for (k, prop) in &s.properties {
                let Some(def) = &prop.default else { continue };
                let missing = match m.get(k) {
                    None => true,
                    Some(v) => is_non_nullable_null(v, Some(prop)),
                };
                if missing {
                    m.insert(k.clone(), def.clone());
                }
            }
            let add = s.additional_schema();
            for (k, v) in m.iter_mut() {
                if let Some(prop) = s.property(k) {
                    apply_defaults_node(v, prop);
                } else if let Some(add) = add {
                    if is_non_nullable_null(v, Some(add))
                        && let Some(def) = &add.default
                    {
                        *v = def.clone();
                    }
                    apply_defaults_node(v, add);
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = s.items.as_deref() else {
                return;
            };
            for v in items.iter_mut() {
                if is_non_nullable_null(v, Some(item))
                    && let Some(def) = &item.default
                {
                    *v = def.clone();
                }
                apply_defaults_node(v, item);
            }
        }
        _ => {}
    }
}
