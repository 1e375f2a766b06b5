//! Rewriting objects: merging an applied configuration into a live object,
//! dropping fields the applied configuration set to null, and removing the
//! paths of a field set.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::fieldset::FieldSet;
use crate::path::PathElement;
use crate::schema::{self, ListKind, Schema};
use crate::walk::{Mode, list_elements};

/// Merges `applied` over `live`: granular maps merge per key, associative
/// lists and sets merge per item (live order kept, new items appended in
/// applied order), everything else is replaced by the applied value.
pub(crate) fn merge(live: Option<&Value>, applied: &Value, sch: Schema<'_>, depth: usize) -> Value {
    match (live, applied) {
        (Some(Value::Object(lm)), Value::Object(am))
            if depth == 0 || !schema::is_atomic_map(sch) =>
        {
            let mut out = lm.clone();
            for (k, av) in am {
                let (child_schema, _) = schema::field(sch, k);
                let merged = merge(lm.get(k), av, child_schema, depth + 1);
                // Existing keys keep their position; new ones are appended.
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(la)), Value::Array(aa)) => {
            let kind = schema::list_kind(sch);
            if kind == ListKind::Atomic {
                return applied.clone();
            }
            merge_lists(la, aa, &kind, schema::items(sch), depth)
        }
        _ => applied.clone(),
    }
}

fn merge_lists(
    live: &[Value],
    applied: &[Value],
    kind: &ListKind,
    items_schema: Schema<'_>,
    depth: usize,
) -> Value {
    let elements = |items: &[Value]| {
        list_elements(kind, items_schema, items, Mode::Lenient, &[]).unwrap_or_default()
    };
    let live_pes = elements(live);
    let applied_pes = elements(applied);
    let mut applied_by_pe: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for ((pe, _), item) in applied_pes.iter().zip(applied) {
        applied_by_pe.entry(pe).or_insert(item);
    }
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let mut in_live = BTreeSet::new();
    for ((pe, repeat), item) in live_pes.iter().zip(live) {
        in_live.insert(pe);
        match applied_by_pe.get(pe) {
            // The applied item stands in for all live copies of its key.
            Some(_) if *repeat => {}
            Some(a) => out.push(merge(Some(item), a, items_schema, depth + 1)),
            None => out.push(item.clone()),
        }
    }
    let mut appended = BTreeSet::new();
    for ((pe, _), item) in applied_pes.iter().zip(applied) {
        if !in_live.contains(pe) && appended.insert(pe) {
            out.push(item.clone());
        }
    }
    Value::Array(out)
}

/// Drops fields the applied configuration set to `null`: upstream records
/// ownership of such a field but the stored object never keeps the null.
pub(crate) fn strip_applied_nulls(result: &mut Value, applied: &Value, sch: Schema<'_>) {
    match (result, applied) {
        (Value::Object(rm), Value::Object(am)) => {
            for (k, av) in am {
                if av.is_null() {
                    rm.shift_remove(k);
                } else if let Some(rv) = rm.get_mut(k) {
                    let (child_schema, _) = schema::field(sch, k);
                    strip_applied_nulls(rv, av, child_schema);
                }
            }
        }
        (Value::Array(ra), Value::Array(aa)) => {
            let kind = schema::list_kind(sch);
            if !matches!(kind, ListKind::Map(_)) {
                return;
            }
            let items_schema = schema::items(sch);
            let Ok(applied_pes) = list_elements(&kind, items_schema, aa, Mode::Lenient, &[]) else {
                return;
            };
            let by_pe: BTreeMap<&PathElement, &Value> =
                applied_pes.iter().map(|(pe, _)| pe).zip(aa).collect();
            let Ok(result_pes) = list_elements(&kind, items_schema, ra, Mode::Lenient, &[]) else {
                return;
            };
            for ((pe, _), item) in result_pes.iter().zip(ra.iter_mut()) {
                if let Some(a) = by_pe.get(pe) {
                    strip_applied_nulls(item, a, items_schema);
                }
            }
        }
        _ => {}
    }
}

/// Removes every member path of `set` (with everything under it) from `obj`.
pub(crate) fn remove_paths(obj: &mut Value, set: &FieldSet, sch: Schema<'_>) {
    remove_in(obj, set, sch, &[]);
}

/// `keys` are the key fields of an associative-list item being kept: they
/// stay even if released, since the item is meaningless without them.
fn remove_in(obj: &mut Value, set: &FieldSet, sch: Schema<'_>, keys: &[String]) {
    match obj {
        Value::Object(m) => {
            for (pe, child) in set.children() {
                let PathElement::Field(k) = pe else { continue };
                if child.is_member() {
                    if !keys.contains(k) {
                        m.shift_remove(k);
                    }
                } else if let Some(v) = m.get_mut(k) {
                    let (child_schema, _) = schema::field(sch, k);
                    remove_in(v, child, child_schema, &[]);
                }
            }
        }
        Value::Array(items) => {
            let kind = schema::list_kind(sch);
            let item_keys: &[String] = match &kind {
                ListKind::Atomic => return,
                ListKind::Map(keys) => keys,
                ListKind::Set => &[],
            };
            let items_schema = schema::items(sch);
            let Ok(pes) = list_elements(&kind, items_schema, items, Mode::Lenient, &[]) else {
                return;
            };
            let old = std::mem::take(items);
            for ((pe, _), mut item) in pes.into_iter().zip(old) {
                match set.child(&pe) {
                    Some(c) if c.is_member() => {}
                    Some(c) => {
                        remove_in(&mut item, c, items_schema, item_keys);
                        items.push(item);
                    }
                    None => items.push(item),
                }
            }
        }
        _ => {}
    }
}
