//! Strategic merge patch (`application/strategic-merge-patch+json`), applied
//! the way kube-apiserver applies it to built-in kinds.
//!
//! Patch metadata comes from an inlined OpenAPI v3 schema: `properties`,
//! `additionalProperties`, `items` (optionally wrapped in a single `allOf`
//! member, as the published Kubernetes schemas do around referenced types),
//! and on list fields `x-kubernetes-patch-strategy` /
//! `x-kubernetes-patch-merge-key`. Fields the schema does not describe fall
//! back to JSON merge patch behaviour: objects merge recursively, `null`
//! deletes, lists are replaced wholesale.
//!
//! Supported directives: `$patch` (`replace` / `delete`, on objects and on
//! elements of merge lists), `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`. Directives never appear in the result.

use serde_json::{Map, Value};

#[cfg(test)]
mod tests;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER_PREFIX: &str = "$setElementOrder";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList";

const EXT_STRATEGY: &str = "x-kubernetes-patch-strategy";
const EXT_MERGE_KEY: &str = "x-kubernetes-patch-merge-key";

/// A malformed strategic merge patch. Every variant describes a client
/// mistake, so callers can return the message as a 400 Bad Request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("strategic merge patch must be a JSON object")]
    PatchNotObject,
    #[error("object to patch must be a JSON object")]
    OriginalNotObject,
    #[error("invalid $patch directive {value} at {path}: expected \"replace\" or \"delete\"")]
    InvalidDirective { path: String, value: String },
    #[error("malformed directive key {key:?} at {path}: expected \"<directive>/<field>\"")]
    MalformedDirectiveKey { path: String, key: String },
    #[error("element {element} of list {path} does not contain merge key {merge_key:?}")]
    MissingMergeKey {
        path: String,
        merge_key: String,
        element: String,
    },
    #[error("cannot merge list of objects at {path}: the field has no merge key")]
    NoMergeKey { path: String },
    #[error("cannot merge list at {path}: elements are of different types")]
    MixedListElements { path: String },
    #[error("cannot merge list at {path}: lists of lists are not supported")]
    ListOfLists { path: String },
    #[error("invalid $setElementOrder for {path}: {reason}")]
    InvalidSetElementOrder { path: String, reason: String },
    #[error("invalid $deleteFromPrimitiveList for {path}: {reason}")]
    InvalidDeleteFromPrimitiveList { path: String, reason: String },
    #[error("invalid $retainKeys at {path}: {reason}")]
    InvalidRetainKeys { path: String, reason: String },
}

/// Applies `patch` to `original` and returns the patched object.
///
/// `schema` is the inlined OpenAPI v3 schema of the object's kind; `None`
/// (or a schema that does not describe a field) yields JSON merge patch
/// behaviour for the undescribed parts.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: Option<&Value>,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotObject);
    };
    let Value::Object(original) = original else {
        return Err(PatchError::OriginalNotObject);
    };
    let root = Path::ROOT;
    merge_map(original.clone(), patch, Schema(schema), &root).map(Value::Object)
}

// ---------------------------------------------------------------------------
// Error locations

/// Location inside the document, kept as a borrowed chain so the common
/// (successful) path never allocates; it is rendered only for errors.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

enum Seg<'a> {
    Root,
    Field(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    fn field<'b>(&'b self, name: &'b str) -> Path<'b> {
        Path {
            parent: Some(self),
            seg: Seg::Field(name),
        }
    }

    fn index(&self, i: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(&p.seg);
            cur = p.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if out.is_empty() { ".".to_owned() } else { out }
    }
}

// ---------------------------------------------------------------------------
// Schema lookups

/// Schema node of the value currently being merged (or nothing known).
#[derive(Clone, Copy)]
struct Schema<'a>(Option<&'a Value>);

impl<'a> Schema<'a> {
    /// The node itself followed by its `allOf` members: inlined Kubernetes
    /// schemas put a field's patch extensions on the property and the
    /// referenced type's structure inside `allOf`.
    fn nodes(self) -> impl Iterator<Item = &'a Map<String, Value>> {
        let node = self.0.and_then(Value::as_object);
        let all_of = node
            .and_then(|n| n.get("allOf"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object);
        node.into_iter().chain(all_of)
    }

    fn keyword(self, name: &str) -> Option<&'a Value> {
        self.nodes().find_map(|n| n.get(name))
    }

    /// Schema of the object field `name`.
    fn field(self, name: &str) -> Schema<'a> {
        if let Some(p) = self.nodes().find_map(|n| n.get("properties")?.get(name)) {
            return Schema(Some(p));
        }
        // Map-typed objects (labels, ConfigMap data, ...) describe every
        // value through additionalProperties.
        Schema(
            self.nodes()
                .find_map(|n| n.get("additionalProperties").filter(|v| v.is_object())),
        )
    }

    fn items(self) -> Schema<'a> {
        Schema(
            self.nodes()
                .find_map(|n| n.get("items").filter(|v| v.is_object())),
        )
    }

    fn has_strategy(self, wanted: &str) -> bool {
        self.keyword(EXT_STRATEGY)
            .and_then(Value::as_str)
            .is_some_and(|s| s.split(',').any(|part| part.trim() == wanted))
    }

    fn merges_lists(self) -> bool {
        self.has_strategy("merge")
    }

    fn replaces_maps(self) -> bool {
        self.has_strategy("replace")
    }

    fn merge_key(self) -> Option<&'a str> {
        self.keyword(EXT_MERGE_KEY).and_then(Value::as_str)
    }
}

// ---------------------------------------------------------------------------
// Objects

#[derive(Clone, Copy, PartialEq, Eq)]
enum MapDirective {
    Replace,
    Delete,
}

fn map_directive(m: &Map<String, Value>, path: &Path) -> Result<Option<MapDirective>, PatchError> {
    match m.get(DIRECTIVE) {
        None => Ok(None),
        Some(Value::String(s)) if s == "replace" => Ok(Some(MapDirective::Replace)),
        Some(Value::String(s)) if s == "delete" => Ok(Some(MapDirective::Delete)),
        Some(other) => Err(PatchError::InvalidDirective {
            path: path.render(),
            value: other.to_string(),
        }),
    }
}

/// Merges the object patch `patch` into `original`.
fn merge_map(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema,
    path: &Path,
) -> Result<Map<String, Value>, PatchError> {
    match map_directive(patch, path)? {
        // Upstream keeps the field and empties it rather than removing it.
        Some(MapDirective::Delete) => Ok(Map::new()),
        // The rest of the patch is the new content; it is still interpreted
        // as a patch onto nothing so nested directives and nulls are not
        // stored verbatim.
        Some(MapDirective::Replace) => merge_fields(Map::new(), patch, schema, path),
        None => merge_fields(original, patch, schema, path),
    }
}

/// Splits `key` into the field it targets when it carries `prefix`.
fn directive_target<'k>(
    key: &'k str,
    prefix: &str,
    path: &Path,
) -> Result<Option<&'k str>, PatchError> {
    let Some(rest) = key.strip_prefix(prefix) else {
        return Ok(None);
    };
    match rest.strip_prefix('/') {
        Some(field) if !field.is_empty() => Ok(Some(field)),
        _ => Err(PatchError::MalformedDirectiveKey {
            path: path.render(),
            key: key.to_owned(),
        }),
    }
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ORDER_PREFIX)
        || key.starts_with(DELETE_PRIMITIVE_PREFIX)
}

fn merge_fields(
    mut out: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema,
    path: &Path,
) -> Result<Map<String, Value>, PatchError> {
    // $retainKeys prunes the original before anything from the patch lands,
    // so fields the patch sets are never pruned by it.
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        apply_retain_keys(&mut out, patch, retain, path)?;
    }

    // Lists named by $setElementOrder are merged together with their order
    // directive, and are skipped by the plain field loop below.
    let mut ordered: Vec<&str> = Vec::new();
    for (key, value) in patch {
        if let Some(field) = directive_target(key, SET_ORDER_PREFIX, path)? {
            apply_set_element_order(&mut out, field, value, patch.get(field), schema, path)?;
            ordered.push(field);
        }
    }

    for (key, value) in patch {
        if is_directive_key(key) || ordered.contains(&key.as_str()) {
            continue;
        }
        merge_field(&mut out, key, value, schema, path)?;
    }

    // Deletions run last so they also apply to items the same patch would
    // otherwise have kept while merging the list itself.
    for (key, value) in patch {
        if let Some(field) = directive_target(key, DELETE_PRIMITIVE_PREFIX, path)? {
            apply_delete_from_primitive_list(&mut out, field, value, path)?;
        }
    }
    Ok(out)
}

fn merge_field(
    out: &mut Map<String, Value>,
    key: &str,
    patch: &Value,
    schema: Schema,
    path: &Path,
) -> Result<(), PatchError> {
    let fpath = path.field(key);
    let fschema = schema.field(key);
    if patch.is_null() {
        out.shift_remove(key);
        return Ok(());
    }
    if let Some(slot) = out.get_mut(key) {
        // The original value is moved out of its slot (not cloned) and the
        // result written back in place, which also keeps the key's position.
        match (&mut *slot, patch) {
            (Value::Object(orig), Value::Object(p)) => {
                let orig = std::mem::take(orig);
                let merged = if fschema.replaces_maps() {
                    merge_map(Map::new(), p, fschema, &fpath)?
                } else {
                    merge_map(orig, p, fschema, &fpath)?
                };
                *slot = Value::Object(merged);
                return Ok(());
            }
            (Value::Array(orig), Value::Array(p)) => {
                let merged = if fschema.merges_lists() {
                    merge_list(std::mem::take(orig), p, fschema, &fpath)?
                } else {
                    fresh_list(p, fschema.items(), &fpath)?
                };
                *slot = Value::Array(merged);
                return Ok(());
            }
            // Anything else (scalars, or a change of type) replaces the value.
            _ => {}
        }
    }
    match fresh_value(patch, fschema, &fpath)? {
        Some(v) => {
            out.insert(key.to_owned(), v);
        }
        None => {
            out.shift_remove(key);
        }
    }
    Ok(())
}

/// The value a patch fragment produces when there is nothing to merge it
/// into; `None` means the fragment asks for the field to be absent.
fn fresh_value(patch: &Value, schema: Schema, path: &Path) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(p) => {
            if map_directive(p, path)? == Some(MapDirective::Delete) {
                return Ok(None);
            }
            merge_map(Map::new(), p, schema, path).map(|m| Some(Value::Object(m)))
        }
        Value::Array(p) => {
            let list = if schema.merges_lists() {
                merge_list(Vec::new(), p, schema, path)?
            } else {
                fresh_list(p, schema.items(), path)?
            };
            Ok(Some(Value::Array(list)))
        }
        Value::Null => Ok(None),
        scalar => Ok(Some(scalar.clone())),
    }
}

/// Content of a list that replaces the original wholesale.
fn fresh_list(patch: &[Value], items: Schema, path: &Path) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(patch.len());
    for (i, elem) in patch.iter().enumerate() {
        let epath = path.index(i);
        match elem {
            // Directive-carrying elements are markers, not content.
            Value::Object(m) if map_directive(m, &epath)?.is_some() => {}
            // Nulls inside a list are data, not deletions.
            Value::Null => out.push(Value::Null),
            other => {
                if let Some(v) = fresh_value(other, items, &epath)? {
                    out.push(v);
                }
            }
        }
    }
    Ok(out)
}

fn apply_retain_keys(
    out: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &Path,
) -> Result<(), PatchError> {
    let bad = |reason: String| PatchError::InvalidRetainKeys {
        path: path.render(),
        reason,
    };
    let Value::Array(list) = retain else {
        return Err(bad("must be a list of field names".to_owned()));
    };
    let names = list
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| bad(format!("entry {v} is not a field name")))
        })
        .collect::<Result<Vec<&str>, _>>()?;
    // A patch that sets a field it does not also retain contradicts itself.
    for (key, value) in patch {
        if value.is_null() || is_directive_key(key) {
            continue;
        }
        if !names.contains(&key.as_str()) {
            return Err(bad(format!(
                "field {key:?} is set by the patch but not listed"
            )));
        }
    }
    out.retain(|k, _| names.contains(&k.as_str()));
    Ok(())
}

fn apply_delete_from_primitive_list(
    out: &mut Map<String, Value>,
    field: &str,
    value: &Value,
    path: &Path,
) -> Result<(), PatchError> {
    let bad = |reason: &str| PatchError::InvalidDeleteFromPrimitiveList {
        path: path.field(field).render(),
        reason: reason.to_owned(),
    };
    let Value::Array(remove) = value else {
        return Err(bad("must be a list"));
    };
    if remove.iter().any(|v| v.is_object() || v.is_array()) {
        return Err(bad("may only contain primitive values"));
    }
    // Nothing to delete from when the field is missing or not a list.
    if let Some(Value::Array(list)) = out.get_mut(field) {
        list.retain(|item| !remove.iter().any(|r| values_eq(item, r)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Lists

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The single element type shared by both lists (`None` when both are empty).
fn element_kind(
    original: &[Value],
    patch: &[Value],
    path: &Path,
) -> Result<Option<Kind>, PatchError> {
    let mut kind = None;
    for v in original.iter().chain(patch) {
        let k = match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => {
                return Err(PatchError::ListOfLists {
                    path: path.render(),
                });
            }
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(PatchError::MixedListElements {
                    path: path.render(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// Identities (merge key values, or the values themselves) of a list's
/// elements by position.
type Identities = Vec<Option<Value>>;

/// Merges a list field whose patch strategy is `merge`.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    schema: Schema,
    path: &Path,
) -> Result<Vec<Value>, PatchError> {
    merge_list_traced(original, patch, schema, path).map(|(items, _)| items)
}

/// Like [`merge_list`], also returning the server order that a following
/// `$setElementOrder` pass must use when it differs from the original list.
fn merge_list_traced(
    original: Vec<Value>,
    patch: &[Value],
    schema: Schema,
    path: &Path,
) -> Result<(Vec<Value>, Option<Identities>), PatchError> {
    match element_kind(&original, patch, path)? {
        None => Ok((original, None)),
        Some(Kind::Object) => merge_object_list(original, patch, schema, path),
        Some(_) => Ok((merge_primitive_list(original, patch), None)),
    }
}

fn merge_primitive_list(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for v in original.iter().chain(patch) {
        if !merged.iter().any(|m| values_eq(m, v)) {
            merged.push(v.clone());
        }
    }
    let placed = merged
        .into_iter()
        .map(|v| {
            let order = patch.iter().position(|p| values_eq(p, &v));
            let server = original.iter().position(|o| values_eq(o, &v));
            Placed {
                value: v,
                order,
                server,
            }
        })
        .collect();
    arrange(placed)
}

fn merge_object_list(
    original: Vec<Value>,
    patch: &[Value],
    schema: Schema,
    path: &Path,
) -> Result<(Vec<Value>, Option<Identities>), PatchError> {
    let Some(key) = schema.merge_key() else {
        return Err(PatchError::NoMergeKey {
            path: path.render(),
        });
    };
    let items = schema.items();

    // First pass: directive elements. Deletions remove every original
    // element with the key; a replace marker discards the original list.
    let original_len = original.len();
    let mut base = original;
    let mut regular: Vec<(usize, &Map<String, Value>)> = Vec::new();
    let mut replace = false;
    for (i, elem) in patch.iter().enumerate() {
        let epath = path.index(i);
        let Value::Object(m) = elem else {
            return Err(PatchError::MixedListElements {
                path: path.render(),
            });
        };
        match map_directive(m, &epath)? {
            None => {
                require_merge_key(m, key, path)?;
                regular.push((i, m));
            }
            Some(MapDirective::Delete) => {
                let kv = require_merge_key(m, key, path)?;
                base.retain(|o| !has_key_value(o, key, kv));
            }
            Some(MapDirective::Replace) => replace = true,
        }
    }

    if replace {
        let mut out = Vec::with_capacity(regular.len());
        for (i, m) in regular {
            out.push(Value::Object(merge_map(
                Map::new(),
                m,
                items,
                &path.index(i),
            )?));
        }
        return Ok((out, None));
    }

    // Key values of the list as it stood before merging: they define the
    // server-side order that server-only elements keep.
    let base_keys: Identities = base
        .iter()
        .map(|o| o.as_object().and_then(|m| m.get(key)).cloned())
        .collect();
    let base_len = base.len();

    let mut merged = base;
    let mut appended: Identities = Vec::new();
    for &(i, m) in &regular {
        let epath = path.index(i);
        let kv = require_merge_key(m, key, path)?;
        match merged.iter().position(|o| has_key_value(o, key, kv)) {
            Some(pos) => {
                let orig = match std::mem::take(&mut merged[pos]) {
                    Value::Object(o) => o,
                    // element_kind guarantees objects; keep going sanely anyway.
                    _ => Map::new(),
                };
                merged[pos] = Value::Object(merge_map(orig, m, items, &epath)?);
            }
            None => {
                appended.push(Some(kv.clone()));
                merged.push(Value::Object(merge_map(Map::new(), m, items, &epath)?));
            }
        }
    }

    // Upstream's $setElementOrder pass looks positions up in the live list
    // *after* this merge edited it in place: deletions shifted the survivors
    // left and the first appended elements took over the vacated slots.
    // Reproducing that keeps element order identical to kube-apiserver's
    // (it decides, e.g., whether a server-only element lands before or after
    // a newly added one).
    let deleted = original_len - base_len;
    let server_order = (deleted > 0).then(|| {
        let mut ids = base_keys.clone();
        ids.extend(appended.iter().take(deleted).cloned());
        ids
    });

    let placed = merged
        .into_iter()
        .enumerate()
        .map(|(idx, value)| {
            let kv = value.as_object().and_then(|m| m.get(key));
            let (order, server) = match kv {
                Some(kv) => (
                    regular
                        .iter()
                        .position(|(_, m)| m.get(key).is_some_and(|pk| values_eq(pk, kv))),
                    base_keys
                        .iter()
                        .position(|b| b.as_ref().is_some_and(|b| values_eq(b, kv))),
                ),
                // Server elements without a merge key cannot be addressed by
                // the patch; they keep their own position.
                None => (None, (idx < base_len).then_some(idx)),
            };
            Placed {
                value,
                order,
                server,
            }
        })
        .collect();
    Ok((arrange(placed), server_order))
}

fn require_merge_key<'m>(
    m: &'m Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<&'m Value, PatchError> {
    m.get(key).ok_or_else(|| PatchError::MissingMergeKey {
        path: path.render(),
        merge_key: key.to_owned(),
        element: Value::Object(m.clone()).to_string(),
    })
}

fn has_key_value(elem: &Value, key: &str, wanted: &Value) -> bool {
    elem.as_object()
        .and_then(|m| m.get(key))
        .is_some_and(|v| values_eq(v, wanted))
}

/// JSON equality, except that numbers compare by value: the same integer
/// may arrive as `1` from one client and `1.0` from another.
fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || ((x.is_f64() || y.is_f64()) && x.as_f64() == y.as_f64())
        }
        _ => a == b,
    }
}

/// A merged list element with its position in the order that the patch
/// requests (`order`, if the patch mentions it) and in the list as it was
/// on the server (`server`, if it existed there).
struct Placed {
    value: Value,
    order: Option<usize>,
    server: Option<usize>,
}

/// Orders a merged list the way upstream does: elements the patch mentions
/// follow the patch's order, the server-only elements follow the server's
/// order, and the two sequences are interleaved so that a server-only
/// element goes before a patch element only when both existed on the server
/// and the server-only one came first there.
fn arrange(items: Vec<Placed>) -> Vec<Value> {
    let (mut from_patch, mut server_only): (Vec<Placed>, Vec<Placed>) =
        items.into_iter().partition(|p| p.order.is_some());
    from_patch.sort_by_key(|p| p.order.unwrap_or(usize::MAX));
    server_only.sort_by_key(|p| p.server.unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((l.server, r.server), (Some(ls), Some(rs)) if ls < rs),
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some(p) = next {
            out.push(p.value);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// $setElementOrder

/// Identity of a list element for ordering: the merge key value for objects,
/// the value itself for primitives.
fn identity<'v>(v: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match v {
        Value::Object(m) => key.and_then(|k| m.get(k)),
        other => Some(other),
    }
}

fn apply_set_element_order(
    out: &mut Map<String, Value>,
    field: &str,
    order: &Value,
    patch_list: Option<&Value>,
    schema: Schema,
    path: &Path,
) -> Result<(), PatchError> {
    let fpath = path.field(field);
    let bad = |reason: String| PatchError::InvalidSetElementOrder {
        path: fpath.render(),
        reason,
    };
    let Value::Array(order) = order else {
        return Err(bad("must be a list".to_owned()));
    };
    let fschema = schema.field(field);
    let key = fschema.merge_key();

    if order.iter().any(|v| v.is_array()) {
        return Err(bad("must not contain lists".to_owned()));
    }
    if order.iter().any(Value::is_object) {
        let Some(key) = key else {
            return Err(bad(
                "lists of objects need a merge key to be ordered".to_owned()
            ));
        };
        for v in order {
            match v {
                Value::Object(m) => {
                    require_merge_key(m, key, &fpath)?;
                }
                _ => {
                    return Err(bad(
                        "elements must all be objects or all primitives".to_owned()
                    ));
                }
            }
        }
    }

    let original = match out.get(field) {
        None => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Err(bad("the field is not a list in the object".to_owned())),
    };
    let patch = match patch_list {
        None => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Err(bad("the patch value for the field is not a list".to_owned())),
    };

    // Every non-directive patch element must appear in the order list, in
    // the same relative order.
    if let Some(patch) = patch {
        let mut remaining = order.iter();
        for elem in patch {
            if elem.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)) {
                continue;
            }
            let id = match elem {
                Value::Object(m) => match key {
                    Some(k) => Some(require_merge_key(m, k, &fpath)?),
                    None => None,
                },
                other => Some(other),
            };
            let found = id.is_some_and(|id| {
                remaining
                    .by_ref()
                    .any(|o| identity(o, key).is_some_and(|oid| values_eq(oid, id)))
            });
            if !found {
                return Err(bad(format!(
                    "patch element {elem} is missing from the order list or out of order"
                )));
            }
        }
    }

    let original_ids: Identities = original
        .map(|o| o.iter().map(|v| identity(v, key).cloned()).collect())
        .unwrap_or_default();

    let (merged, traced_ids) = match (original, patch) {
        (None, None) => return Ok(()),
        (Some(o), None) => (o.clone(), None),
        (o, Some(p)) => {
            if fschema.merges_lists() {
                merge_list_traced(o.cloned().unwrap_or_default(), p, fschema, &fpath)?
            } else {
                (fresh_list(p, fschema.items(), &fpath)?, None)
            }
        }
    };
    let server_ids = traced_ids.unwrap_or(original_ids);

    let placed = merged
        .into_iter()
        .map(|value| {
            let (order_pos, server) = match identity(&value, key) {
                Some(id) => (
                    order
                        .iter()
                        .position(|o| identity(o, key).is_some_and(|oid| values_eq(oid, id))),
                    server_ids
                        .iter()
                        .position(|s| s.as_ref().is_some_and(|s| values_eq(s, id))),
                ),
                None => (None, None),
            };
            Placed {
                value,
                order: order_pos,
                server,
            }
        })
        .collect();
    out.insert(field.to_owned(), Value::Array(arrange(placed)));
    Ok(())
}
