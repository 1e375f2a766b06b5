//! ClusterRole aggregation written back: the union an aggregated ClusterRole grants (computed
//! by the index, which authorization uses at once) is stored in its `rules`, as upstream's
//! clusterrole-aggregation controller does, so `kubectl get` and `describe` show it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::index::GROUP;
use super::rules::Rule;
use crate::error::ApiError;
use crate::server::State;

/// Rewrite every aggregated ClusterRole whose stored rules differ from what it aggregates.
pub async fn sync(state: &Arc<State>) -> Result<(), ApiError> {
    let snap = state.authz.snapshot();
    let res = state
        .registry()
        .get(GROUP, "v1", "clusterroles")
        .ok_or_else(|| ApiError::internal("clusterroles not registered"))?;
    for name in snap.aggregated() {
        let Some(want) = snap.rules_of("ClusterRole", "", name) else {
            continue;
        };
        let key = res.key("", name);
        let Some(row) = state.store.get(&key).await? else {
            continue;
        };
        if Rule::list_from(&row.value) == *want {
            continue;
        }
        let mut next: Value = row.value.as_ref().clone();
        next["rules"] = json!(want.iter().map(Rule::to_json).collect::<Vec<_>>());
        // A lost race is fine: the competing ClusterRole write signals another pass.
        crate::write::store_internal(state, &res, &key, row.rev, next).await?;
    }
    Ok(())
}

/// Run [`sync`] whenever a ClusterRole changed.
pub fn spawn(state: Arc<State>) {
    tokio::spawn(async move {
        loop {
            state.authz.aggregation.notified().await;
            if let Err(e) = sync(&state).await {
                tracing::warn!(error = %e, "ClusterRole aggregation");
            }
        }
    });
}
