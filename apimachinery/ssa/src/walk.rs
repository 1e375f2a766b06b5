//! Schema-aware traversals over JSON objects: the set of fields an object
//! sets, and the added/modified/removed comparison between two objects.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::SsaError;
use crate::fieldset::FieldSet;
use crate::path::{PathElement, path_string};
use crate::schema::{self, ListKind, Schema};

/// How to treat malformed list items. Applied configurations are checked
/// strictly; stored objects are read leniently so bad data already at rest
/// never blocks a write.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Strict,
    Lenient,
}

/// Identifies one item of a granular list.
pub(crate) fn item_element(
    kind: &ListKind,
    items_schema: Schema<'_>,
    index: usize,
    item: &Value,
    mode: Mode,
    path: &[PathElement],
) -> Result<PathElement, SsaError> {
    let keys = match kind {
        ListKind::Set => return Ok(PathElement::value(item)),
        ListKind::Atomic => return Ok(PathElement::Index(index)),
        ListKind::Map(keys) => keys,
    };
    let invalid = |msg: String| SsaError::Invalid(format!("{}: {msg}", path_string(path)));
    let Some(obj) = item.as_object() else {
        return match mode {
            Mode::Strict => Err(invalid(format!(
                "element {index}: associative list item must be an object"
            ))),
            Mode::Lenient => Ok(PathElement::Index(index)),
        };
    };
    let mut parts = Vec::with_capacity(keys.len());
    for key in keys {
        let found = obj
            .get(key)
            .filter(|v| !v.is_null())
            .or_else(|| schema::key_default(items_schema, key));
        match (found, mode) {
            (Some(v), _) => parts.push((key.as_str(), v)),
            (None, Mode::Strict) => {
                return Err(invalid(format!(
                    "element {index}: associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
                )));
            }
            (None, Mode::Lenient) => {}
        }
    }
    if parts.is_empty() {
        if mode == Mode::Strict {
            return Err(invalid("associative list declares no key fields".into()));
        }
        return Ok(PathElement::Index(index));
    }
    Ok(PathElement::key(parts))
}

/// Item elements of a granular list, in order; the flag marks repeats of an
/// element seen earlier. Strict mode rejects repeats.
pub(crate) fn list_elements(
    kind: &ListKind,
    items_schema: Schema<'_>,
    items: &[Value],
    mode: Mode,
    path: &[PathElement],
) -> Result<Vec<(PathElement, bool)>, SsaError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = item_element(kind, items_schema, i, item, mode, path)?;
        let repeat = !seen.insert(pe.clone());
        if repeat && mode == Mode::Strict {
            return Err(SsaError::Invalid(format!(
                "{}: duplicate entries for key {pe}",
                path_string(path)
            )));
        }
        out.push((pe, repeat));
    }
    Ok(out)
}

/// Fields `v` sets, before any metadata stripping.
pub(crate) fn raw_fields(v: &Value, schema: Schema<'_>, mode: Mode) -> Result<FieldSet, SsaError> {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    collect(v, schema, mode, &mut path, &mut set)?;
    Ok(set)
}

fn collect(
    v: &Value,
    sch: Schema<'_>,
    mode: Mode,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) -> Result<(), SsaError> {
    match v {
        Value::Object(m) => {
            if schema::is_atomic_map(sch) && !path.is_empty() {
                set.insert(path);
                return Ok(());
            }
            for (k, child) in m {
                let (child_schema, declared) = schema::field(sch, k);
                path.push(PathElement::field(k.as_str()));
                collect(child, child_schema, mode, path, set)?;
                let empty_map = child.as_object().is_some_and(|m| m.is_empty());
                if child.is_null() || empty_map || !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = schema::list_kind(sch);
            if kind == ListKind::Atomic {
                set.insert(path);
                return Ok(());
            }
            let items_schema = schema::items(sch);
            let elements = list_elements(&kind, items_schema, items, mode, path)?;
            let repeated: BTreeSet<&PathElement> = elements
                .iter()
                .filter(|(_, r)| *r)
                .map(|(pe, _)| pe)
                .collect();
            for ((pe, _), item) in elements.iter().zip(items) {
                path.push(pe.clone());
                // Repeated items cannot be told apart, so only the item as a
                // whole is tracked.
                if !repeated.contains(pe) {
                    collect(item, items_schema, mode, path, set)?;
                }
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
    Ok(())
}

/// Result of comparing an old and a new object, as upstream's Compare.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub(crate) fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    pub(crate) fn map(&self, f: impl Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: f(&self.added),
            modified: f(&self.modified),
            removed: f(&self.removed),
        }
    }
}

pub(crate) fn compare(old: &Value, new: &Value, sch: Schema<'_>) -> Comparison {
    let mut out = Comparison::default();
    let mut path = Vec::new();
    cmp(Some(old), Some(new), sch, &mut path, &mut out);
    out
}

#[derive(PartialEq)]
enum Shape {
    Object,
    Array,
    Scalar,
}

fn shape(v: &Value) -> Shape {
    match v {
        Value::Object(_) => Shape::Object,
        Value::Array(_) => Shape::Array,
        _ => Shape::Scalar,
    }
}

fn cmp(
    l: Option<&Value>,
    r: Option<&Value>,
    sch: Schema<'_>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let Some(present) = r.or(l) else { return };
    if let (Some(lv), Some(rv)) = (l, r)
        && shape(lv) != shape(rv)
    {
        cmp(l, None, sch, path, out);
        cmp(None, r, sch, path, out);
        return;
    }
    let descended = match present {
        Value::Object(_) => cmp_maps(l, r, sch, path, out),
        Value::Array(_) => cmp_lists(l, r, sch, path, out),
        _ => false,
    };
    if !descended {
        leaf(l, r, path, out);
    } else if !path.is_empty() {
        // A container that appears or disappears is itself added/removed,
        // which is where upstream's "." entries for Update managers come from.
        match (l, r) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            _ => {}
        }
    }
}

fn leaf(l: Option<&Value>, r: Option<&Value>, path: &[PathElement], out: &mut Comparison) {
    match (l, r) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        (Some(a), Some(b)) if a != b => out.modified.insert(path),
        _ => {}
    }
}

/// Returns false when the maps must be compared as one leaf.
fn cmp_maps(
    l: Option<&Value>,
    r: Option<&Value>,
    sch: Schema<'_>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) -> bool {
    let lm = l.and_then(Value::as_object);
    let rm = r.and_then(Value::as_object);
    let empty = |m: Option<&serde_json::Map<String, Value>>| m.is_none_or(|m| m.is_empty());
    if (schema::is_atomic_map(sch) && !path.is_empty()) || (empty(lm) && empty(rm)) {
        return false;
    }
    let mut keys: Vec<&String> = rm.map(|m| m.keys().collect()).unwrap_or_default();
    if let Some(lm) = lm {
        keys.extend(
            lm.keys()
                .filter(|k| rm.is_none_or(|rm| !rm.contains_key(*k))),
        );
    }
    for k in keys {
        let (child_schema, _) = schema::field(sch, k);
        path.push(PathElement::field(k.as_str()));
        cmp(
            lm.and_then(|m| m.get(k)),
            rm.and_then(|m| m.get(k)),
            child_schema,
            path,
            out,
        );
        path.pop();
    }
    true
}

fn cmp_lists(
    l: Option<&Value>,
    r: Option<&Value>,
    sch: Schema<'_>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) -> bool {
    let empty: &[Value] = &[];
    let la = l.and_then(Value::as_array).map_or(empty, Vec::as_slice);
    let ra = r.and_then(Value::as_array).map_or(empty, Vec::as_slice);
    let kind = schema::list_kind(sch);
    if kind == ListKind::Atomic || (la.is_empty() && ra.is_empty()) {
        return false;
    }
    let items_schema = schema::items(sch);
    let index = |items: &'_ [Value]| -> Vec<(PathElement, usize)> {
        let mut seen = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            // Lenient mode never fails.
            if let Ok(pe) = item_element(&kind, items_schema, i, item, Mode::Lenient, path) {
                seen.entry(pe).or_insert(i);
            }
        }
        let mut ordered: Vec<(PathElement, usize)> = seen.into_iter().collect();
        ordered.sort_by_key(|(_, i)| *i);
        ordered
    };
    let lidx = index(la);
    let ridx = index(ra);
    let lmap: BTreeMap<&PathElement, usize> = lidx.iter().map(|(pe, i)| (pe, *i)).collect();
    let rmap: BTreeMap<&PathElement, usize> = ridx.iter().map(|(pe, i)| (pe, *i)).collect();
    for (pe, ri) in &ridx {
        path.push(pe.clone());
        cmp(
            lmap.get(pe).map(|&i| &la[i]),
            Some(&ra[*ri]),
            items_schema,
            path,
            out,
        );
        path.pop();
    }
    for (pe, li) in &lidx {
        if !rmap.contains_key(pe) {
            path.push(pe.clone());
            cmp(Some(&la[*li]), None, items_schema, path, out);
            path.pop();
        }
    }
    true
}
