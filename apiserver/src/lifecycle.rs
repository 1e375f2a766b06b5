//! In-process controllers the API itself needs: default namespaces, namespace and CRD deletion,
//! Event expiry and storage compaction.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::crd::CLEANUP_FINALIZER;
use crate::error::ApiError;
use crate::meta;
use crate::registry::{Flavor, Resource};
use crate::server::State;
use crate::storage::WriteOp;
use crate::write;

pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

fn builtin(state: &State, g: &str, plural: &str) -> Result<Arc<Resource>, ApiError> {
    state
        .registry()
        .get(g, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} not registered")))
}

pub async fn bootstrap(state: &Arc<State>) -> Result<(), ApiError> {
    state.reload_crds().await?;
    state.reload_policies().await?;
    load_rbac(state).await?;
    state.reload_webhooks().await?;
    let ns = builtin(state, "", "namespaces")?;
    for n in DEFAULT_NAMESPACES {
        write::create_internal(state, &ns, "", json!({"metadata": {"name": n}})).await?;
    }
    crate::authz::bootstrap::run(state, &state.config.manifests).await?;
    Ok(())
}

/// Fill the RBAC index from storage; writes from here on reach it through `after_commit`.
async fn load_rbac(state: &Arc<State>) -> Result<(), ApiError> {
    for plural in [
        "roles",
        "clusterroles",
        "rolebindings",
        "clusterrolebindings",
    ] {
        let prefix = crate::registry::storage_prefix(crate::authz::index::GROUP, plural);
        let (rows, _, _) = state.store.list(&prefix, 0, None, 0).await?;
        state
            .authz
            .index
            .apply(rows.into_iter().map(|r| (r.key, r.rev, Some(r.value))));
    }
    Ok(())
}

pub fn spawn(state: Arc<State>) {
    crate::gc::spawn(state.clone());
    crate::authz::aggregation::spawn(state.clone());
    let s = state.clone();
    tokio::spawn(async move {
        // Revoked tokens stop working within a second; new ones are also picked up on use.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let s = s.clone();
            let _ = tokio::task::spawn_blocking(move || s.tokens.refresh()).await;
        }
    });
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if let Err(e) = finalize_pass(&s).await {
                tracing::warn!(error = %e, "finalization pass");
            }
        }
    });
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = expire_events(&s).await {
                tracing::warn!(error = %e, "event expiry");
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.compaction_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let target = state.store.current_rev() - state.store.options().keep_revisions;
            if target > state.store.compacted_rev()
                && let Err(e) = state.store.compact(target).await
            {
                tracing::warn!(error = %e, "compaction");
            }
        }
    });
}

async fn expire_events(state: &Arc<State>) -> Result<(), ApiError> {
    for (key, rev) in state.store.expired(chrono::Utc::now().timestamp()).await? {
        let _ = state
            .store
            .write(WriteOp::Delete {
                key,
                expected_rev: rev,
            })
            .await;
    }
    Ok(())
}

/// Drive terminating namespaces and CRDs one step further.
async fn finalize_pass(state: &Arc<State>) -> Result<(), ApiError> {
    let ns_res = builtin(state, "", "namespaces")?;
    let (rows, _, _) = state.store.list(&ns_res.prefix(""), 0, None, 0).await?;
    for row in rows
        .iter()
        .filter(|r| meta::meta_str(&r.value, "deletionTimestamp").is_some())
    {
        finalize_namespace(state, &ns_res, &row.key, row.rev, &row.value).await?;
    }
    let crd_res = state
        .registry()
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| ApiError::internal("CRDs not registered"))?;
    let (rows, _, _) = state.store.list(&crd_res.prefix(""), 0, None, 0).await?;
    for row in rows
        .iter()
        .filter(|r| meta::meta_str(&r.value, "deletionTimestamp").is_some())
    {
        finalize_crd(state, &crd_res, &row.key, row.rev, &row.value).await?;
    }
    Ok(())
}

async fn finalize_namespace(
    state: &Arc<State>,
    res: &Arc<Resource>,
    key: &str,
    rev: i64,
    ns: &Value,
) -> Result<(), ApiError> {
    let name = meta::name(ns).to_string();
    let spec_fins: Vec<String> = ns
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !spec_fins.iter().any(|f| f == "kubernetes") {
        return Ok(());
    }
    // Delete every namespaced object (each storage prefix once: the Event views share one).
    let reg = state.registry();
    let mut seen = std::collections::HashSet::new();
    let mut remaining = 0usize;
    let mut with_finalizers: Vec<String> = Vec::new();
    for r in reg
        .all()
        .filter(|r| r.namespaced && r.flavor != Flavor::EventsV1)
    {
        if !seen.insert(r.storage.clone()) {
            continue;
        }
        let (rows, _, _) = state.store.list(&r.prefix(&name), 0, None, 0).await?;
        for row in rows {
            remaining += 1;
            let fins = meta::finalizers(&row.value);
            if !fins.is_empty() {
                with_finalizers.extend(fins);
            }
            write::delete_internal(state, r, &name, meta::name(&row.value)).await?;
        }
    }
    let now = meta::now();
    let mut next = ns.clone();
    if remaining == 0 {
        next["spec"]["finalizers"] = Value::Array(
            spec_fins
                .iter()
                .filter(|f| *f != "kubernetes")
                .map(|f| json!(f))
                .collect(),
        );
    } else {
        with_finalizers.sort();
        with_finalizers.dedup();
        let conds = vec![
            json!({"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "reason": "ResourcesDiscovered", "message": "All resources successfully discovered", "lastTransitionTime": now}),
            json!({"type": "NamespaceDeletionContentFailure", "status": "False", "reason": "ContentDeleted", "message": "All content successfully deleted, may be waiting on finalization", "lastTransitionTime": now}),
            json!({"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain", "message": format!("Some resources are remaining: {remaining} objects remain"), "lastTransitionTime": now}),
            json!({"type": "NamespaceFinalizersRemaining", "status": if with_finalizers.is_empty() { "False" } else { "True" }, "reason": if with_finalizers.is_empty() { "ContentHasNoFinalizers" } else { "SomeFinalizersRemain" }, "message": if with_finalizers.is_empty() { "All content-preserving finalizers finished".to_string() } else { format!("Some content in the namespace has finalizers remaining: {}", with_finalizers.join(", ")) }, "lastTransitionTime": now}),
        ];
        // Keep transition times when nothing changed, so repeated passes write nothing.
        let old = ns
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or(json!([]));
        let same = |a: &Value, b: &Value| {
            a["type"] == b["type"] && a["status"] == b["status"] && a["message"] == b["message"]
        };
        let merged: Vec<Value> = conds
            .into_iter()
            .map(|c| {
                old.as_array()
                    .and_then(|o| o.iter().find(|x| same(x, &c)).cloned())
                    .unwrap_or(c)
            })
            .collect();
        next["status"]["conditions"] = Value::Array(merged);
        next["status"]["phase"] = json!("Terminating");
    }
    if &next != ns {
        write::store_internal(state, res, key, rev, next).await?;
    }
    Ok(())
}

async fn finalize_crd(
    state: &Arc<State>,
    res: &Arc<Resource>,
    key: &str,
    rev: i64,
    crd: &Value,
) -> Result<(), ApiError> {
    if !meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(());
    }
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reg = state.registry();
    let Some(cr_res) = reg
        .all()
        .find(|r| r.group == group && r.plural == plural)
        .cloned()
    else {
        return Ok(());
    };
    let (rows, _, _) = state.store.list(&cr_res.prefix(""), 0, None, 0).await?;
    if rows.is_empty() {
        let mut next = crd.clone();
        let fins: Vec<String> = meta::finalizers(crd)
            .into_iter()
            .filter(|f| f != CLEANUP_FINALIZER)
            .collect();
        meta::meta_mut(&mut next).insert("finalizers".into(), json!(fins));
        return write::store_internal(state, res, key, rev, next).await;
    }
    for row in rows {
        let ns = meta::meta_str(&row.value, "namespace")
            .unwrap_or("")
            .to_string();
        write::delete_internal(state, &cr_res, &ns, meta::name(&row.value)).await?;
    }
    Ok(())
}
