//! Reading list/map semantics out of an inlined OpenAPI v3 schema.
//!
//! Where the schema is absent or silent, objects are granular maps and lists
//! are atomic, as upstream's deduced type does.

use serde_json::Value;

/// How a list's items are identified when merging and tracking ownership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

pub(crate) type Schema<'a> = Option<&'a Value>;

fn ext<'a>(schema: Schema<'a>, name: &str) -> Option<&'a Value> {
    schema.and_then(|s| s.get(name))
}

pub(crate) fn is_atomic_map(schema: Schema<'_>) -> bool {
    ext(schema, "x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
}

pub(crate) fn list_kind(schema: Schema<'_>) -> ListKind {
    match ext(schema, "x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => return ListKind::Map(map_keys(schema)),
        Some("set") => return ListKind::Set,
        Some(_) => return ListKind::Atomic,
        None => {}
    }
    // Built-in kinds describe merge lists with the strategic-merge-patch
    // extensions; upstream turns those into associative lists/sets.
    let merges = ext(schema, "x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .is_some_and(|s| s.split(',').any(|p| p.trim() == "merge"));
    if !merges {
        return ListKind::Atomic;
    }
    match ext(schema, "x-kubernetes-patch-merge-key").and_then(Value::as_str) {
        Some(key) => ListKind::Map(vec![key.to_string()]),
        None if !items_are_objects(schema) => ListKind::Set,
        None => ListKind::Atomic,
    }
}

fn map_keys(schema: Schema<'_>) -> Vec<String> {
    ext(schema, "x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn items_are_objects(schema: Schema<'_>) -> bool {
    let items = items(schema);
    ext(items, "type").and_then(Value::as_str) == Some("object")
        || ext(items, "properties").is_some()
}

pub(crate) fn items(schema: Schema<'_>) -> Schema<'_> {
    ext(schema, "items").filter(|v| v.is_object())
}

/// Schema of property `name` and whether it is a declared (named) field.
/// Undeclared keys (additionalProperties, preserved unknown fields) are
/// tracked as members themselves, like upstream does for map entries.
pub(crate) fn field<'a>(schema: Schema<'a>, name: &str) -> (Schema<'a>, bool) {
    if let Some(prop) = ext(schema, "properties").and_then(|p| p.get(name)) {
        return (Some(prop), true);
    }
    match ext(schema, "additionalProperties") {
        Some(ap) if ap.is_object() => (Some(ap), false),
        _ => (None, false),
    }
}

/// The `default` a key field declares, used when an item omits that key.
pub(crate) fn key_default<'a>(items_schema: Schema<'a>, key: &str) -> Option<&'a Value> {
    let (prop, declared) = field(items_schema, key);
    if declared {
        prop.and_then(|p| p.get("default"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_kinds() {
        let m = json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]});
        assert_eq!(list_kind(Some(&m)), ListKind::Map(vec!["type".into()]));
        let smp = json!({"x-kubernetes-patch-strategy": "merge,retainKeys",
                         "x-kubernetes-patch-merge-key": "name"});
        assert_eq!(list_kind(Some(&smp)), ListKind::Map(vec!["name".into()]));
        let scalars = json!({"x-kubernetes-patch-strategy": "merge", "items": {"type": "string"}});
        assert_eq!(list_kind(Some(&scalars)), ListKind::Set);
        assert_eq!(list_kind(None), ListKind::Atomic);
        assert_eq!(list_kind(Some(&json!({"type": "array"}))), ListKind::Atomic);
    }
}
