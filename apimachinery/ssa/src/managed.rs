//! `metadata.managedFields` entries and the working form they are decoded to.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::SsaError;
use crate::fieldset::FieldSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    Apply,
    Update,
}

/// One entry of `metadata.managedFields`, with the same JSON as Kubernetes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manager: String,
    pub operation: Operation,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fields_type: String,
    #[serde(default, rename = "fieldsV1", skip_serializing_if = "Option::is_none")]
    pub fields_v1: Option<Value>,
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub subresource: Option<String>,
}

fn is_none_or_empty(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

pub const FIELDS_V1: &str = "FieldsV1";

impl ManagedFieldsEntry {
    /// Decodes `fields_v1` (absent means no fields).
    pub fn field_set(&self) -> Result<FieldSet, SsaError> {
        match &self.fields_v1 {
            None => Ok(FieldSet::new()),
            Some(v) => FieldSet::from_fields_v1(v).map_err(|e| SsaError::BadManagedFields {
                manager: self.manager.clone(),
                reason: e.to_string(),
            }),
        }
    }

    fn subresource_str(&self) -> &str {
        self.subresource.as_deref().unwrap_or("")
    }
}

/// Who an entry belongs to. As upstream, appliers are identified without
/// their apiVersion so re-applying at another version reuses the entry,
/// while updaters get one entry per apiVersion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub manager: String,
    pub operation: Operation,
    pub subresource: String,
    pub api_version: String,
}

impl Identity {
    pub(crate) fn new(
        manager: &str,
        operation: Operation,
        subresource: Option<&str>,
        api_version: &str,
    ) -> Self {
        Identity {
            manager: manager.to_string(),
            operation,
            subresource: subresource.unwrap_or("").to_string(),
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_string(),
            },
        }
    }

    fn of(entry: &ManagedFieldsEntry) -> Self {
        Identity::new(
            &entry.manager,
            entry.operation,
            Some(entry.subresource_str()),
            &entry.api_version,
        )
    }
}

/// A decoded entry being rewritten by one operation.
pub(crate) struct Tracked {
    pub entry: ManagedFieldsEntry,
    pub id: Identity,
    pub set: FieldSet,
    original: Option<FieldSet>,
}

impl Tracked {
    pub(crate) fn fresh(id: Identity, api_version: &str) -> Self {
        Tracked {
            entry: ManagedFieldsEntry {
                manager: id.manager.clone(),
                operation: id.operation,
                api_version: api_version.to_string(),
                time: None,
                fields_type: FIELDS_V1.to_string(),
                fields_v1: None,
                subresource: (!id.subresource.is_empty()).then(|| id.subresource.clone()),
            },
            id,
            set: FieldSet::new(),
            original: None,
        }
    }
}

/// Decodes entries; entries sharing an identity are folded together. With
/// `skip_bad`, undecodable entries are dropped instead of failing.
pub(crate) fn decode(
    managed: &[ManagedFieldsEntry],
    skip_bad: bool,
) -> Result<Vec<Tracked>, SsaError> {
    let mut out: Vec<Tracked> = Vec::with_capacity(managed.len() + 1);
    for entry in managed {
        let set = match entry.field_set() {
            Ok(s) => s,
            Err(_) if skip_bad => continue,
            Err(e) => return Err(e),
        };
        let id = Identity::of(entry);
        if let Some(existing) = out.iter_mut().find(|t| t.id == id) {
            existing.set = existing.set.union(&set);
            existing.original = None;
            continue;
        }
        out.push(Tracked {
            entry: entry.clone(),
            id,
            original: Some(set.clone()),
            set,
        });
    }
    Ok(out)
}

/// Re-encodes changed entries, stamps the acting entry, drops empty ones and
/// sorts as upstream does (operation, time, manager, apiVersion, subresource).
pub(crate) fn encode(
    tracked: Vec<Tracked>,
    acting: &Identity,
    api_version: &str,
    now: &str,
) -> Vec<ManagedFieldsEntry> {
    let mut out = Vec::with_capacity(tracked.len());
    for t in tracked {
        if t.set.is_empty() {
            continue;
        }
        let mut entry = t.entry;
        let changed = t.original.as_ref() != Some(&t.set);
        if changed || entry.fields_v1.is_none() {
            entry.fields_v1 = Some(t.set.to_fields_v1());
            entry.fields_type = FIELDS_V1.to_string();
        }
        if &t.id == acting && (changed || entry.api_version != api_version) {
            entry.api_version = api_version.to_string();
            entry.time = Some(now.to_string());
        }
        out.push(entry);
    }
    out.sort_by(entry_order);
    out
}

fn entry_order(p: &ManagedFieldsEntry, q: &ManagedFieldsEntry) -> Ordering {
    // Timestamps are RFC 3339 as the server writes them (UTC, fixed width),
    // so text order is time order; a missing time sorts first like the epoch.
    p.operation
        .cmp(&q.operation)
        .then_with(|| p.time.cmp(&q.time))
        .then_with(|| p.manager.cmp(&q.manager))
        .then_with(|| p.api_version.cmp(&q.api_version))
        .then_with(|| p.subresource_str().cmp(q.subresource_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serde_matches_kubernetes_json() {
        let raw = json!({
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": "2024-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:a": {}}}
        });
        let e: ManagedFieldsEntry = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(e.operation, Operation::Apply);
        assert_eq!(e.subresource, None);
        assert_eq!(serde_json::to_value(&e).unwrap(), raw);
        let with_sub = json!({"manager": "m", "operation": "Update", "subresource": "status"});
        let e: ManagedFieldsEntry = serde_json::from_value(with_sub.clone()).unwrap();
        assert_eq!(serde_json::to_value(&e).unwrap(), with_sub);
    }
}
