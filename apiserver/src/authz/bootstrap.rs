//! Default ClusterRoles and ClusterRoleBindings, shaped like upstream's bootstrap policy
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`) for the kinds rdd serves, and the
//! start-up reconciliation that keeps them (and rdd's own manifests in `deploy/rbac`) in place.

use std::sync::Arc;

use serde_json::{Value, json};

use super::index::GROUP;
use crate::error::ApiError;
use crate::meta;
use crate::server::State;
use crate::write;

pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn labels(extra: Value) -> Value {
    let mut l = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let (Some(m), Some(e)) = (l.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    l
}

fn cluster_role(name: &str, extra_labels: Value, rules: Value) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels(extra_labels), "annotations": {AUTOUPDATE: "true"}},
        "rules": rules,
    })
}

fn aggregated(name: &str, extra_labels: Value, selector_label: &str) -> Value {
    let mut r = cluster_role(name, extra_labels, json!([]));
    r["aggregationRule"] =
        json!({"clusterRoleSelectors": [{"matchLabels": {selector_label: "true"}}]});
    r
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": labels(json!({})), "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": groups.iter().map(|g| json!({"apiGroup": GROUP, "kind": "Group", "name": g})).collect::<Vec<_>>(),
    })
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

/// The default policy: what every client needs to discover the API and ask about itself,
/// `cluster-admin` for `system:masters`, and the user-facing `admin` ⊇ `edit` ⊇ `view`
/// aggregated from labelled parts, so CRD authors can extend them as upstream.
pub fn default_objects() -> Vec<Value> {
    let info_urls = ["/livez", "/readyz", "/healthz", "/version", "/version/"];
    let mut discovery_urls = info_urls.to_vec();
    discovery_urls.extend([
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/openapi",
        "/openapi/*",
    ]);
    let agg = "rbac.authorization.k8s.io/aggregate-to-";
    vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        cluster_role(
            "system:discovery",
            json!({}),
            json!([{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            json!([{"nonResourceURLs": info_urls, "verbs": ["get"]}]),
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ]),
        ),
        aggregated("admin", json!({}), &format!("{agg}admin")),
        aggregated(
            "edit",
            json!({format!("{agg}admin"): "true"}),
            &format!("{agg}edit"),
        ),
        aggregated(
            "view",
            json!({format!("{agg}edit"): "true"}),
            &format!("{agg}view"),
        ),
        cluster_role(
            "system:aggregate-to-admin",
            json!({format!("{agg}admin"): "true"}),
            json!([{"apiGroups": [GROUP], "resources": ["roles", "rolebindings"], "verbs": ([READ, WRITE].concat())}]),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            json!({format!("{agg}edit"): "true"}),
            json!([
                {"apiGroups": [""], "resources": ["configmaps", "secrets", "serviceaccounts", "services"], "verbs": WRITE},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": READ},
                {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets"], "verbs": WRITE},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": WRITE},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ([READ, WRITE].concat())},
            ]),
        ),
        cluster_role(
            "system:aggregate-to-view",
            json!({format!("{agg}view"): "true"}),
            json!([
                {"apiGroups": [""], "resources": ["configmaps", "events", "serviceaccounts", "services", "services/status", "namespaces", "namespaces/status"], "verbs": READ},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": READ},
                {"apiGroups": ["apps"], "resources": ["deployments", "deployments/status", "daemonsets", "daemonsets/status"], "verbs": READ},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": READ},
            ]),
        ),
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

/// The fields a reconciliation may replace; metadata and `roleRef` (immutable) are kept.
const RECONCILED: &[&str] = &["rules", "aggregationRule", "subjects"];

/// Make sure `obj` exists. An existing object is brought back to what is declared when it is
/// a Role, ClusterRole or binding that still carries the autoupdate annotation `"true"` (the
/// upstream convention for "the server owns this"; set it to `"false"` to keep local edits).
/// Other kinds (Namespaces, ServiceAccounts) are created when missing and otherwise left alone.
pub async fn ensure(state: &Arc<State>, obj: Value) -> Result<(), ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let res = state
        .registry()
        .by_kind(group, version, kind)
        .ok_or_else(|| {
            ApiError::internal(format!("bootstrap: {api_version} {kind} is not served"))
        })?;
    let namespace = meta::meta_str(&obj, "namespace").unwrap_or("").to_string();
    let name = meta::name(&obj).to_string();
    let key = res.key(&namespace, &name);
    let Some(row) = state.store.get(&key).await? else {
        return write::create_internal(state, &res, &namespace, obj).await;
    };
    let owned = row
        .value
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        == Some("true");
    if res.group != GROUP || !owned {
        return Ok(());
    }
    let mut next = row.value.as_ref().clone();
    for f in RECONCILED {
        if *f == "rules" && obj.get("aggregationRule").is_some() {
            // Written by the aggregation, not declared.
            continue;
        }
        match obj.get(*f) {
            Some(v) => next[*f] = v.clone(),
            None => {
                if let Some(m) = next.as_object_mut() {
                    m.remove(*f);
                }
            }
        }
    }
    if next == *row.value {
        return Ok(());
    }
    write::store_internal(state, &res, &key, row.rev, next).await
}

/// Split a multi-document YAML manifest into objects (empty documents skipped).
pub fn parse_manifests(text: &str) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let mut doc = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            if doc.lines().any(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            }) {
                out.push(crate::request::yaml_to_json(&doc)?);
            }
            doc.clear();
        } else {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    Ok(out)
}

/// Create or reconcile the default policy, then the extra manifests (rdd's own identities).
pub async fn run(state: &Arc<State>, extra: &[Value]) -> Result<(), ApiError> {
    for obj in default_objects().into_iter().chain(extra.iter().cloned()) {
        ensure(state, obj).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use crate::authz::{Attributes, Index};

    #[test]
    fn defaults_let_authenticated_users_discover_and_ask_only() {
        let idx = Index::default();
        let objs = default_objects();
        idx.apply(objs.iter().enumerate().map(|(i, o)| {
            let plural = if o["kind"] == "ClusterRole" {
                "clusterroles"
            } else {
                "clusterrolebindings"
            };
            (
                format!(
                    "{}/{}",
                    crate::registry::storage_prefix(GROUP, plural),
                    meta::name(o)
                ),
                i as i64 + 1,
                Some(Arc::new(o.clone())),
            )
        }));
        let s = idx.snapshot();
        let u = UserInfo {
            username: "alice".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        };
        for p in ["/api", "/apis/apps/v1", "/openapi/v3", "/version"] {
            assert!(
                s.authorize(&u, &Attributes::non_resource("get", p)).allowed,
                "{p}"
            );
        }
        assert!(
            s.authorize(
                &u,
                &Attributes::resource(
                    "create",
                    "authorization.k8s.io",
                    "selfsubjectrulesreviews",
                    ""
                )
            )
            .allowed
        );
        assert!(
            !s.authorize(
                &u,
                &Attributes::resource("list", "", "configmaps", "default")
            )
            .allowed
        );
        // admin ⊇ edit ⊇ view through aggregation.
        let admin = s.rules_of("ClusterRole", "", "admin").unwrap();
        let view = s.rules_of("ClusterRole", "", "view").unwrap();
        assert!(view.iter().all(|r| admin.contains(r)));
        assert!(admin.len() > view.len());
    }

    #[test]
    fn manifests_split_on_document_markers() {
        let docs = parse_manifests("# c\n---\na: 1\n---\n\n---\nb: 2\n").unwrap();
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": 2})]);
    }
}
