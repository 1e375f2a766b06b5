//! Authorization: RBAC evaluated like kube-apiserver's RBAC authorizer over an in-memory index
//! of Roles, ClusterRoles and their bindings.
//!
//! | caller                         | answer                                                  |
//! |--------------------------------|---------------------------------------------------------|
//! | in group `system:masters`      | allowed (as upstream's privileged-group authorizer)     |
//! | anyone, GET on health/version  | allowed, also before the bootstrap roles exist          |
//! | anyone else                    | allowed iff a binding that names them grants a rule     |
//!
//! Denials become `403 Forbidden` Status objects worded as upstream's, naming the verb,
//! resource, API group and namespace that were missing.

pub mod aggregation;
pub mod attrs;
pub mod bootstrap;
pub mod escalation;
pub mod impersonate;
pub mod index;
pub mod rules;

use std::sync::Arc;

use crate::auth::UserInfo;
use crate::error::ApiError;
pub use index::{Decision, Index, Snapshot};
pub use rules::{Attributes, Rule};

const MASTERS: &str = "system:masters";

/// Paths anybody may GET, like upstream's `system:public-info-viewer` binding, but also while
/// the bootstrap roles are still being created so health checks never depend on them.
const PUBLIC_INFO: &[&str] = &["/livez", "/readyz", "/healthz", "/version"];

fn public_info(a: &Attributes) -> bool {
    !a.resource_request
        && a.verb == "get"
        && PUBLIC_INFO
            .iter()
            .any(|p| a.path == *p || a.path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

#[derive(Default)]
pub struct Authorizer {
    pub index: Index,
    /// Signalled after ClusterRole writes: aggregated roles may need their `rules` rewritten.
    pub aggregation: tokio::sync::Notify,
}

impl Authorizer {
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision {
                allowed: true,
                reason: format!("allowed for the {MASTERS} group"),
            };
        }
        if public_info(a) {
            return Decision {
                allowed: true,
                reason: "health and version are public".into(),
            };
        }
        self.index.snapshot().authorize(user, a)
    }

    /// Everything `user` may do in `namespace`: resource rules, non-resource rules, errors.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let (mut rules, errors) = self.index.snapshot().rules_for(user, namespace);
        let all = |verbs: &[&str]| Rule {
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        };
        if user.groups.iter().any(|g| g == MASTERS) {
            let mut r = all(&["*"]);
            r.api_groups = vec!["*".into()];
            r.resources = vec!["*".into()];
            let mut n = all(&["*"]);
            n.non_resource_urls = vec!["*".into()];
            for x in [r, n] {
                if !rules.contains(&x) {
                    rules.push(x);
                }
            }
        }
        (rules, errors)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.index.snapshot()
    }
}

/// The 403 upstream answers: `<resource>[.<group>] "<name>" is forbidden: User "<u>" cannot
/// <verb> resource "<resource>" in API group "<g>" in the namespace "<ns>"[: <reason>]`.
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let what = if !a.resource_request {
        format!(
            "User {:?} cannot {} path {:?}",
            user.username, a.verb, a.path
        )
    } else if a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.username,
            a.verb,
            a.combined_resource(),
            a.group
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.username,
            a.verb,
            a.combined_resource(),
            a.group,
            a.namespace
        )
    };
    let what = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    if !a.resource_request || a.resource.is_empty() {
        return ApiError::forbidden(format!("forbidden: {what}"));
    }
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let message = if a.name.is_empty() {
        format!("{qualified} is forbidden: {what}")
    } else {
        format!("{qualified} {:?} is forbidden: {what}", a.name)
    };
    let mut e = ApiError::forbidden(message);
    if !a.name.is_empty() {
        e.name = Some(a.name.clone());
    }
    e.group = Some(a.group.clone());
    e.kind = Some(a.resource.clone());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_read_like_upstream() {
        let u = UserInfo {
            username: "alice".into(),
            uid: String::new(),
            groups: vec![],
        };
        let mut a = Attributes::resource("get", "", "secrets", "team");
        a.name = "s".into();
        let e = forbidden(&u, &a, "");
        assert_eq!(
            e.message,
            r#"secrets "s" is forbidden: User "alice" cannot get resource "secrets" in API group "" in the namespace "team""#
        );
        let st = e.to_status();
        assert_eq!(st["reason"], "Forbidden");
        assert_eq!(st["code"], 403);
        assert_eq!(st["details"]["name"], "s");
        assert_eq!(st["details"]["kind"], "secrets");
        let a = Attributes::resource("list", "app.rancherdesktop.io", "apps", "");
        assert_eq!(
            forbidden(&u, &a, "").message,
            r#"apps.app.rancherdesktop.io is forbidden: User "alice" cannot list resource "apps" in API group "app.rancherdesktop.io" at the cluster scope"#
        );
        let a = Attributes::non_resource("get", "/metrics");
        assert_eq!(
            forbidden(&u, &a, "").message,
            r#"forbidden: User "alice" cannot get path "/metrics""#
        );
    }

    #[test]
    fn masters_and_public_paths_bypass_rbac() {
        let z = Authorizer::default();
        let nobody = UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        };
        assert!(
            z.authorize(&nobody, &Attributes::non_resource("get", "/readyz/ping"))
                .allowed
        );
        assert!(
            !z.authorize(&nobody, &Attributes::non_resource("get", "/apis"))
                .allowed
        );
        let admin = UserInfo {
            username: "rdd-admin".into(),
            uid: String::new(),
            groups: vec![MASTERS.into()],
        };
        assert!(
            z.authorize(
                &admin,
                &Attributes::resource("delete", "", "namespaces", "")
            )
            .allowed
        );
    }
}
