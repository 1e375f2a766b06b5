//! Garbage collection over `ownerReferences`, as kube-apiserver's collector does it:
//!
//! | dependent's owners                                  | action                          |
//! |-----------------------------------------------------|---------------------------------|
//! | none of them exists any more                        | delete the dependent            |
//! | one is deleting with the `orphan` finalizer         | drop that owner reference       |
//! | one is deleting with the `foregroundDeletion` one   | delete the dependent            |
//! | otherwise                                           | nothing                         |
//!
//! and an owner deleting with `orphan` or `foregroundDeletion` loses that finalizer once no
//! dependent refers to it any more. A pass runs at start-up (dangling references) and after
//! deletions, debounced.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::meta;
use crate::registry::{Flavor, Resource};
use crate::server::State;
use crate::storage::EventType;
use crate::write;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

struct Obj {
    res: Arc<Resource>,
    key: String,
    rev: i64,
    value: Arc<Value>,
}

fn owner_uids(v: &Value) -> Vec<String> {
    meta::meta(v)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One collection pass over every stored object.
pub async fn pass(state: &Arc<State>) -> Result<(), ApiError> {
    let reg = state.registry();
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    for r in reg
        .all()
        .filter(|r| r.flavor != Flavor::EventsV1 && !r.verbs.iter().all(|v| *v == "create"))
    {
        if !r.storage_version || !seen.insert(r.storage.clone()) {
            continue;
        }
        let (rows, _, _) = state.store.list(&r.prefix(""), 0, None, 0).await?;
        for row in rows {
            all.push(Obj {
                res: r.clone(),
                key: row.key,
                rev: row.rev,
                value: row.value,
            });
        }
    }
    let by_uid: HashMap<String, &Obj> = all
        .iter()
        .filter_map(|o| meta::meta_str(&o.value, "uid").map(|u| (u.to_string(), o)))
        .collect();
    let mut referenced: HashSet<String> = HashSet::new();
    for o in &all {
        let uids = owner_uids(&o.value);
        if uids.is_empty() {
            continue;
        }
        let ns = meta::meta_str(&o.value, "namespace").unwrap_or("");
        // An owner resolves if it exists and is cluster-scoped or in the dependent's namespace.
        let live: Vec<&&Obj> = uids
            .iter()
            .filter_map(|u| by_uid.get(u))
            .filter(|owner| {
                !owner.res.namespaced
                    || meta::meta_str(&owner.value, "namespace").unwrap_or("") == ns
            })
            .collect();
        let name = meta::name(&o.value).to_string();
        if live.is_empty() {
            if meta::meta_str(&o.value, "deletionTimestamp").is_none() {
                write::delete_internal(state, &o.res, ns, &name).await?;
            }
            continue;
        }
        let orphaning: Vec<String> = live
            .iter()
            .filter(|w| {
                meta::meta_str(&w.value, "deletionTimestamp").is_some()
                    && meta::finalizers(&w.value).iter().any(|f| f == ORPHAN)
            })
            .filter_map(|w| meta::meta_str(&w.value, "uid").map(str::to_string))
            .collect();
        let foreground = live.iter().any(|w| {
            meta::meta_str(&w.value, "deletionTimestamp").is_some()
                && meta::finalizers(&w.value).iter().any(|f| f == FOREGROUND)
        });
        if !orphaning.is_empty() {
            let mut next = o.value.as_ref().clone();
            if let Some(refs) = next
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| {
                    !r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| orphaning.iter().any(|x| x == u))
                });
                if refs.is_empty() {
                    meta::meta_mut(&mut next).remove("ownerReferences");
                }
            }
            write::store_internal(state, &o.res, &o.key, o.rev, next).await?;
        } else if foreground {
            if meta::meta_str(&o.value, "deletionTimestamp").is_none() {
                write::delete_internal(state, &o.res, ns, &name).await?;
            }
            referenced.extend(uids);
        } else {
            referenced.extend(uids);
        }
    }
    // Owners waiting on their dependents: release them once nothing refers to them.
    for o in &all {
        if meta::meta_str(&o.value, "deletionTimestamp").is_none() {
            continue;
        }
        let fins = meta::finalizers(&o.value);
        if !fins.iter().any(|f| f == ORPHAN || f == FOREGROUND) {
            continue;
        }
        let uid = meta::meta_str(&o.value, "uid").unwrap_or("");
        if referenced.contains(uid) {
            continue;
        }
        let mut next = o.value.as_ref().clone();
        let keep: Vec<String> = fins
            .into_iter()
            .filter(|f| f != ORPHAN && f != FOREGROUND)
            .collect();
        meta::meta_mut(&mut next).insert("finalizers".into(), json!(keep));
        write::store_internal(state, &o.res, &o.key, o.rev, next).await?;
    }
    Ok(())
}

/// Run a pass at start and whenever deletions (or deletions starting) were committed.
pub fn spawn(state: Arc<State>) {
    tokio::spawn(async move {
        let mut rx = state.store.hub.subscribe();
        let mut pending = true;
        loop {
            if pending {
                // Let a burst of deletions settle into one pass.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while rx.try_recv().is_ok() {}
                pending = false;
                if let Err(e) = pass(&state).await {
                    tracing::warn!(error = %e, "garbage collection pass");
                    pending = true;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
            match rx.recv().await {
                Ok(ev) => {
                    pending = ev.kind == EventType::Deleted
                        || meta::meta_str(&ev.object, "deletionTimestamp").is_some();
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => pending = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}
