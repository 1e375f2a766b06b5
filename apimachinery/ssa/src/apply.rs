//! The two write paths: server-side apply and ordinary updates.

use serde_json::{Map, Value};

use crate::SsaError;
use crate::error::Conflict;
use crate::fieldset::FieldSet;
use crate::managed::{self, Identity, ManagedFieldsEntry, Operation, Tracked};
use crate::merge::{merge, remove_paths, strip_applied_nulls};
use crate::path::{PathElement, path_string};
use crate::walk::{Mode, compare, raw_fields};

/// Which top-level part of an object a write covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Kinds without a status subresource.
    All,
    /// The main resource of a kind with a status subresource: `.status` in
    /// the request is ignored and the live status kept.
    ExcludeStatus,
    /// The `/status` subresource: only `.status` is written.
    OnlyStatus,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApplyOutcome {
    pub object: Value,
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

/// Server-set fields no manager ever owns (upstream strips these after every
/// operation). `metadata` itself is only dropped as a leaf, keeping what is
/// owned below it.
const NEVER_OWNED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "generation"],
    &["metadata", "creationTimestamp"],
    &["metadata", "deletionTimestamp"],
    &["metadata", "deletionGracePeriodSeconds"],
    &["metadata", "managedFields"],
    &["metadata", "selfLink"],
    &["metadata", "clusterName"],
];

fn field_path(names: &[&str]) -> Vec<PathElement> {
    names.iter().map(|n| PathElement::field(*n)).collect()
}

fn strip_meta(set: &mut FieldSet) {
    for p in NEVER_OWNED {
        set.remove_subtree(&field_path(p));
    }
    set.remove_member(&field_path(&["metadata"]));
}

fn never_owned_set() -> FieldSet {
    let mut set = FieldSet::new();
    for p in NEVER_OWNED {
        set.insert(&field_path(p));
    }
    set.insert(&field_path(&["metadata"]));
    set
}

fn status_path() -> Vec<PathElement> {
    field_path(&["status"])
}

fn scope_filter(set: &FieldSet, scope: Scope) -> FieldSet {
    match scope {
        Scope::All => set.clone(),
        Scope::ExcludeStatus => {
            let mut out = set.clone();
            out.remove_subtree(&status_path());
            out
        }
        Scope::OnlyStatus => set.restricted_to(&status_path()),
    }
}

fn tracked_fields(set: &FieldSet, scope: Scope) -> FieldSet {
    let mut out = scope_filter(set, scope);
    strip_meta(&mut out);
    out
}

/// The fields an object sets, as recorded in managedFields: granular maps
/// contribute their fields, associative-list items contribute themselves
/// plus their fields, set items contribute `v:` entries, atomic lists and
/// maps contribute only themselves. Server-set metadata is left out.
pub fn fields_of(obj: &Value, schema: Option<&Value>) -> FieldSet {
    // Lenient mode cannot fail; the fallback only satisfies the type.
    let raw = raw_fields(obj, schema, Mode::Lenient).unwrap_or_default();
    tracked_fields(&raw, Scope::All)
}

/// The part of an applied configuration a write in `scope` looks at.
fn scoped_config(applied: &Map<String, Value>, scope: Scope) -> Value {
    let mut out = applied.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    match scope {
        Scope::All => {}
        Scope::ExcludeStatus => {
            out.shift_remove("status");
        }
        Scope::OnlyStatus => {
            let mut only = Map::new();
            if let Some(status) = applied.get("status") {
                only.insert("status".into(), status.clone());
            }
            return Value::Object(only);
        }
    }
    Value::Object(out)
}

fn acting_index(tracked: &mut Vec<Tracked>, id: &Identity, api_version: &str) -> usize {
    match tracked.iter().position(|t| &t.id == id) {
        Some(i) => i,
        None => {
            tracked.push(Tracked::fresh(id.clone(), api_version));
            tracked.len() - 1
        }
    }
}

/// Server-side apply of `applied` by `manager` onto `live` (`None` creates).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    managed: &[ManagedFieldsEntry],
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    scope: Scope,
    force: bool,
    schema: Option<&Value>,
    now: &str,
) -> Result<ApplyOutcome, SsaError> {
    let applied_map = applied
        .as_object()
        .ok_or_else(|| SsaError::Invalid("applied configuration must be a JSON object".into()))?;
    let config = scoped_config(applied_map, scope);
    let config_fields = raw_fields(&config, schema, Mode::Strict)?;
    let owned_by_config = tracked_fields(&config_fields, scope);

    let live_obj = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut tracked = managed::decode(managed, false)?;
    let id = Identity::new(manager, Operation::Apply, subresource, api_version);
    let me = acting_index(&mut tracked, &id, api_version);
    let last = std::mem::take(&mut tracked[me].set);

    let mut object = merge(Some(&live_obj), &config, schema, 0);

    // Fields this manager applied before but no longer does are removed,
    // unless someone (including this config) still owns them or something
    // below them. Containers count as owned if anything inside is.
    let mut keep = config_fields.union(&never_owned_set());
    for t in &tracked {
        keep = keep.union(&t.set);
    }
    let released = scope_filter(
        &last.with_containers().difference(&keep.with_containers()),
        scope,
    );
    remove_paths(&mut object, &released, schema);

    let cmp = compare(&live_obj, &object, schema).map(|s| tracked_fields(s, scope));
    let changed = cmp.changed();
    let mut conflicts = Vec::new();
    let mut taken = Vec::new();
    for (i, t) in tracked.iter().enumerate() {
        if i == me {
            continue;
        }
        let clash = t.set.intersection(&changed);
        if clash.is_empty() {
            continue;
        }
        for p in clash.members() {
            conflicts.push(Conflict {
                manager: t.entry.manager.clone(),
                field: path_string(&p),
                api_version: t.entry.api_version.clone(),
                subresource: t.entry.subresource.clone().filter(|s| !s.is_empty()),
            });
        }
        taken.push((i, clash));
    }
    if !conflicts.is_empty() && !force {
        return Err(SsaError::Conflicts(conflicts));
    }
    for (i, clash) in taken {
        tracked[i].set = tracked[i].set.difference(&clash);
    }
    for (i, t) in tracked.iter_mut().enumerate() {
        if i != me {
            t.set = t.set.difference(&cmp.removed);
        }
    }
    tracked[me].set = owned_by_config;

    strip_applied_nulls(&mut object, &config, schema);
    Ok(ApplyOutcome {
        object,
        managed_fields: managed::encode(tracked, &id, api_version, now),
    })
}

/// Records an ordinary write (`old` -> `new`) by `manager`: changed and added
/// fields move to this manager's Update entry without conflicts, removed
/// fields leave every entry, and empty entries are dropped. Undecodable
/// incoming entries are dropped rather than failing the write.
#[allow(clippy::too_many_arguments)]
pub fn update(
    old: Option<&Value>,
    new: &Value,
    managed: &[ManagedFieldsEntry],
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    scope: Scope,
    schema: Option<&Value>,
    now: &str,
) -> Vec<ManagedFieldsEntry> {
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let cmp = compare(old, new, schema).map(|s| tracked_fields(s, scope));
    let changed = cmp.changed();
    // skip_bad makes decoding infallible.
    let mut tracked = managed::decode(managed, true).unwrap_or_default();
    let id = Identity::new(manager, Operation::Update, subresource, api_version);
    let me = acting_index(&mut tracked, &id, api_version);
    for (i, t) in tracked.iter_mut().enumerate() {
        t.set = t.set.difference(&cmp.removed);
        if i != me {
            t.set = t.set.difference(&changed);
        }
    }
    tracked[me].set = tracked[me].set.union(&changed);
    managed::encode(tracked, &id, api_version, now)
}
