//! Garbage collection over `ownerReferences`, as kube-apiserver's collector does it:
//!
//! | dependent's owners                                  | action                          |
//! |-----------------------------------------------------|---------------------------------|
//! | none of them exists any more                        | delete the dependent            |
//! | one is deleting with the `orphan` finalizer         | drop that owner reference       |
//! | one is deleting with the `foregroundDeletion` one   | delete the dependent, in the foreground when it has dependents itself |
//! | otherwise                                           | nothing                         |
//!
//! and an owner deleting with `orphan` loses that finalizer once no dependent refers to it any
//! more, one deleting with `foregroundDeletion` once no dependent refers to it with
//! `blockOwnerDeletion: true`. All state lives in the stored objects (finalizers, deletion
//! timestamps, references), so a pass after a crash picks up where the last one stopped. A
//! pass runs at start-up (dangling references, interrupted deletions) and after deletions,
//! debounced.

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

struct OwnerRef {
    uid: String,
    block: bool,
}

fn owner_refs(v: &Value) -> Vec<OwnerRef> {
    meta::meta(v)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some(OwnerRef {
                        uid: r.get("uid").and_then(Value::as_str)?.to_string(),
                        block: r.get("blockOwnerDeletion") == Some(&Value::Bool(true)),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
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
    let deleting_with = |v: &Value, fin: &str| {
        meta::meta_str(v, "deletionTimestamp").is_some()
            && meta::finalizers(v).iter().any(|f| f == fin)
    };
    // Owners that still have dependents: deleting one of those in the foreground cascades.
    let owners: HashSet<String> = all.iter().flat_map(|o| owner_uids(&o.value)).collect();
    // Owners some dependent still refers to, and refers to with blockOwnerDeletion.
    let mut referenced: HashSet<String> = HashSet::new();
    let mut blocking: HashSet<String> = HashSet::new();
    for o in &all {
        let refs = owner_refs(&o.value);
        if refs.is_empty() {
            continue;
        }
        let ns = meta::meta_str(&o.value, "namespace").unwrap_or("");
        // An owner resolves if it exists and is cluster-scoped or in the dependent's namespace.
        let live: Vec<&&Obj> = refs
            .iter()
            .filter_map(|r| by_uid.get(&r.uid))
            .filter(|owner| {
                !owner.res.namespaced
                    || meta::meta_str(&owner.value, "namespace").unwrap_or("") == ns
            })
            .collect();
        let name = meta::name(&o.value).to_string();
        let deleting = meta::meta_str(&o.value, "deletionTimestamp").is_some();
        if live.is_empty() {
            if !deleting {
                write::delete_internal(state, &o.res, ns, &name).await?;
            }
            continue;
        }
        let orphaning: Vec<&str> = live
            .iter()
            .filter(|w| deleting_with(&w.value, ORPHAN))
            .filter_map(|w| meta::meta_str(&w.value, "uid"))
            .collect();
        let foreground = live.iter().any(|w| deleting_with(&w.value, FOREGROUND));
        for r in refs.iter().filter(|r| !orphaning.contains(&r.uid.as_str())) {
            referenced.insert(r.uid.clone());
            if r.block {
                blocking.insert(r.uid.clone());
            }
        }
        if !orphaning.is_empty() {
            let mut next = o.value.as_ref().clone();
            if let Some(refs) = next
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| {
                    !r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| orphaning.contains(&u))
                });
                if refs.is_empty() {
                    meta::meta_mut(&mut next).remove("ownerReferences");
                }
            }
            write::store_internal(state, &o.res, &o.key, o.rev, next).await?;
        }
        if foreground && !deleting {
            let uid = meta::meta_str(&o.value, "uid").unwrap_or("");
            let policy = owners.contains(uid).then_some("Foreground");
            write::delete_internal_with(state, &o.res, ns, &name, policy).await?;
        }
    }
    // Owners waiting on their dependents: release them once nothing holds them.
    for o in &all {
        if meta::meta_str(&o.value, "deletionTimestamp").is_none() {
            continue;
        }
        let uid = meta::meta_str(&o.value, "uid").unwrap_or("");
        let fins = meta::finalizers(&o.value);
        let release = |f: &str| match f {
            ORPHAN => !referenced.contains(uid),
            FOREGROUND => !blocking.contains(uid),
            _ => false,
        };
        if !fins.iter().any(|f| release(f)) {
            continue;
        }
        let mut next = o.value.as_ref().clone();
        let keep: Vec<String> = fins.into_iter().filter(|f| !release(f)).collect();
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
                tokio::time::sleep(state.config.gc_delay).await;
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
