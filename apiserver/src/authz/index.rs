//! The in-memory view of every Role, ClusterRole, RoleBinding and ClusterRoleBinding.
//!
//! Requests are authorized against an immutable [`Snapshot`], so the hot path takes one read
//! lock and never touches storage. Every committed RBAC write is applied here before the
//! client hears of it (see `write::after_commit`), and the snapshot is rebuilt whole: RBAC
//! objects are few on a desktop and rebuilding keeps aggregation and lookups simple.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use super::rules::{Attributes, Rule};
use crate::auth::UserInfo;
use crate::meta;
use crate::registry::storage_prefix;

pub const GROUP: &str = "rbac.authorization.k8s.io";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

fn kind_of_key(key: &str) -> Option<Kind> {
    [
        ("roles", Kind::Role),
        ("clusterroles", Kind::ClusterRole),
        ("rolebindings", Kind::RoleBinding),
        ("clusterrolebindings", Kind::ClusterRoleBinding),
    ]
    .into_iter()
    .find(|(plural, _)| key.starts_with(&storage_prefix(GROUP, plural)))
    .map(|(_, k)| k)
}

/// Whether a storage key holds an RBAC object (and so must be fed to [`Index::apply`]).
pub fn is_rbac_key(key: &str) -> bool {
    kind_of_key(key).is_some()
}

#[derive(Clone, Debug)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

impl Subject {
    /// Whether this subject names the user; `binding_ns` is where a RoleBinding lives, so a
    /// ServiceAccount subject without a namespace means one in the binding's namespace.
    fn matches(&self, user: &UserInfo, binding_ns: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.username == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_ns
                } else {
                    &self.namespace
                };
                !ns.is_empty()
                    && user
                        .username
                        .strip_prefix("system:serviceaccount:")
                        .and_then(|rest| rest.split_once(':'))
                        .is_some_and(|(n, name)| n == ns && name == self.name)
            }
            _ => false,
        }
    }

    fn describe(&self, binding_ns: &str) -> String {
        if self.kind == "ServiceAccount" {
            let ns = if self.namespace.is_empty() {
                binding_ns
            } else {
                &self.namespace
            };
            format!("{} {:?}", self.kind, format!("{}/{ns}", self.name))
        } else {
            format!("{} {:?}", self.kind, self.name)
        }
    }
}

#[derive(Clone, Debug)]
struct Binding {
    name: String,
    /// Empty for ClusterRoleBindings.
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_value(obj: &Value) -> Binding {
        let s = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Binding {
            name: meta::name(obj).to_string(),
            namespace: meta::meta_str(obj, "namespace").unwrap_or("").to_string(),
            role_kind: s("/roleRef/kind"),
            role_name: s("/roleRef/name"),
            subjects: obj
                .get("subjects")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|x| Subject {
                            kind: x.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                            name: x.get("name").and_then(Value::as_str).unwrap_or("").into(),
                            namespace: x
                                .get("namespace")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn describe(&self, subject: &Subject) -> String {
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                self.name,
                self.role_kind,
                self.role_name,
                subject.describe("")
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {}",
                format!("{}/{}", self.name, self.namespace),
                self.role_kind,
                self.role_name,
                subject.describe(&self.namespace)
            )
        }
    }
}

/// An authorization answer with upstream's wording of why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// Everything RBAC knows at one moment; immutable once built.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Effective rules: for aggregated ClusterRoles the union of the roles they select.
    cluster_roles: HashMap<String, Arc<Vec<Rule>>>,
    roles: HashMap<(String, String), Arc<Vec<Rule>>>,
    cluster_bindings: Vec<Binding>,
    bindings: HashMap<String, Vec<Binding>>,
    /// Names of the ClusterRoles with an `aggregationRule`.
    aggregated: Vec<String>,
}

impl Snapshot {
    fn role_rules(&self, b: &Binding) -> Result<&Arc<Vec<Rule>>, String> {
        match b.role_kind.as_str() {
            "ClusterRole" => self
                .cluster_roles
                .get(&b.role_name)
                .ok_or_else(|| format!("clusterrole.{GROUP} {:?} not found", b.role_name)),
            "Role" if !b.namespace.is_empty() => self
                .roles
                .get(&(b.namespace.clone(), b.role_name.clone()))
                .ok_or_else(|| format!("role.{GROUP} {:?} not found", b.role_name)),
            other => Err(format!("unknown roleRef kind {other:?}")),
        }
    }

    /// Call `visit` with every rule granted to `user` in `namespace` (cluster-wide grants
    /// included) until it returns true. Returns the errors met (roles that do not exist).
    fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        visit: &mut dyn FnMut(&Binding, &Subject, &Rule) -> bool,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let namespaced = if namespace.is_empty() {
            None
        } else {
            self.bindings.get(namespace)
        };
        for b in self
            .cluster_bindings
            .iter()
            .chain(namespaced.into_iter().flatten())
        {
            let Some(subject) = b.subjects.iter().find(|s| s.matches(user, &b.namespace)) else {
                continue;
            };
            match self.role_rules(b) {
                Ok(rules) => {
                    for r in rules.iter() {
                        if visit(b, subject, r) {
                            return errors;
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let mut allowed_by = None;
        let errors = self.visit(user, &a.namespace, &mut |b, s, r| {
            if r.allows(a) {
                allowed_by = Some(b.describe(s));
                true
            } else {
                false
            }
        });
        match allowed_by {
            Some(by) => Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {by}"),
            },
            None => Decision {
                allowed: false,
                reason: match errors.as_slice() {
                    [] => String::new(),
                    [one] => format!("RBAC: {one}"),
                    many => format!("RBAC: [{}]", many.join(", ")),
                },
            },
        }
    }

    /// Every rule `user` holds in `namespace`, and the errors met collecting them.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let mut out: Vec<Rule> = Vec::new();
        let errors = self.visit(user, namespace, &mut |_, _, r| {
            if !out.contains(r) {
                out.push(r.clone());
            }
            false
        });
        (out, errors)
    }

    /// The names of the aggregated ClusterRoles.
    pub fn aggregated(&self) -> &[String] {
        &self.aggregated
    }

    /// The rules of a role as a binding would grant them (for the escalation check).
    pub fn rules_of(&self, role_kind: &str, namespace: &str, name: &str) -> Option<Arc<Vec<Rule>>> {
        match role_kind {
            "ClusterRole" => self.cluster_roles.get(name).cloned(),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .cloned(),
            _ => None,
        }
    }

    fn build(objects: &HashMap<String, (i64, Arc<Value>)>) -> Snapshot {
        let mut snap = Snapshot::default();
        // name → (labels, own rules, aggregation selectors)
        let mut cluster_roles: HashMap<String, ClusterRoleParts<'_>> = HashMap::new();
        for (key, (_, obj)) in objects {
            let name = meta::name(obj).to_string();
            match kind_of_key(key) {
                Some(Kind::Role) => {
                    let ns = meta::meta_str(obj, "namespace").unwrap_or("").to_string();
                    snap.roles
                        .insert((ns, name), Arc::new(Rule::list_from(obj)));
                }
                Some(Kind::ClusterRole) => {
                    let labels = obj.pointer("/metadata/labels");
                    let selectors = obj.pointer("/aggregationRule/clusterRoleSelectors");
                    cluster_roles.insert(name, (labels, Rule::list_from(obj), selectors));
                }
                Some(Kind::RoleBinding) => {
                    let b = Binding::from_value(obj);
                    snap.bindings
                        .entry(b.namespace.clone())
                        .or_default()
                        .push(b);
                }
                Some(Kind::ClusterRoleBinding) => {
                    let mut b = Binding::from_value(obj);
                    b.namespace.clear();
                    snap.cluster_bindings.push(b);
                }
                None => {}
            }
        }
        snap.cluster_roles = aggregate(&cluster_roles);
        snap.aggregated = cluster_roles
            .iter()
            .filter(|(_, (_, _, sel))| sel.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        snap.aggregated.sort();
        // A stable order makes "allowed by" reasons deterministic.
        snap.cluster_bindings.sort_by(|a, b| a.name.cmp(&b.name));
        for list in snap.bindings.values_mut() {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        snap
    }
}

/// A ClusterRole's labels, own rules and aggregation selectors.
type ClusterRoleParts<'a> = (Option<&'a Value>, Vec<Rule>, Option<&'a Value>);

/// Effective rules of every ClusterRole. A role with an `aggregationRule` gets the union of
/// the rules of the roles its selectors match (as upstream's aggregation controller writes
/// them into `rules`); chains of aggregated roles are followed to a fixed point.
fn aggregate(roles: &HashMap<String, ClusterRoleParts<'_>>) -> HashMap<String, Arc<Vec<Rule>>> {
    let mut effective: HashMap<&str, Vec<Rule>> = roles
        .iter()
        .map(|(n, (_, rules, sel))| {
            (
                n.as_str(),
                if sel.is_some() {
                    Vec::new()
                } else {
                    rules.clone()
                },
            )
        })
        .collect();
    let aggregated: Vec<(&str, std::collections::BTreeSet<&str>)> = roles
        .iter()
        .filter_map(|(name, (_, _, sel))| {
            let selectors = (*sel)?.as_array()?;
            let sources = roles
                .iter()
                .filter(|(other, (labels, _, _))| {
                    *other != name
                        && selectors.iter().any(|s| {
                            crate::admission::selector_matches(
                                Some(s),
                                labels.and_then(Value::as_object),
                            )
                        })
                })
                .map(|(other, _)| other.as_str())
                .collect::<std::collections::BTreeSet<_>>();
            Some((name.as_str(), sources))
        })
        .collect();
    // Sets only grow, so this ends; the bound guards against pathological chains.
    for _ in 0..8 {
        let mut changed = false;
        for (name, sources) in &aggregated {
            let mut add = Vec::new();
            for src in sources {
                for r in effective.get(src).into_iter().flatten() {
                    add.push(r.clone());
                }
            }
            let target = effective.entry(name).or_default();
            for r in add {
                if !target.contains(&r) {
                    target.push(r);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (name, _) in &aggregated {
        // One order whatever the hash order of this build, so what is written back into the
        // role's `rules` only changes when the rules do.
        if let Some(rules) = effective.get_mut(name) {
            rules.sort();
        }
    }
    effective
        .into_iter()
        .map(|(n, r)| (n.to_string(), Arc::new(r)))
        .collect()
}

#[derive(Default)]
struct Raw {
    objects: HashMap<String, (i64, Arc<Value>)>,
    /// Revisions of deletions, so a late, older write cannot resurrect a deleted object.
    deleted: HashMap<String, i64>,
}

impl Raw {
    fn put(&mut self, key: &str, rev: i64, obj: Option<Arc<Value>>) -> bool {
        let newest = self
            .objects
            .get(key)
            .map(|(r, _)| *r)
            .max(self.deleted.get(key).copied())
            .unwrap_or(0);
        if rev <= newest {
            return false;
        }
        match obj {
            Some(o) => {
                self.deleted.remove(key);
                self.objects.insert(key.to_string(), (rev, o));
            }
            None => {
                self.objects.remove(key);
                self.deleted.insert(key.to_string(), rev);
            }
        }
        true
    }
}

/// The RBAC index: raw objects by storage key and the snapshot built from them.
#[derive(Default)]
pub struct Index {
    raw: Mutex<Raw>,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Index {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Apply committed changes: `(key, rev, Some(object))` for writes, `None` for deletions.
    /// Older revisions than the one already seen for a key are ignored, so concurrent writers
    /// may report in any order.
    pub fn apply<I>(&self, changes: I)
    where
        I: IntoIterator<Item = (String, i64, Option<Arc<Value>>)>,
    {
        let mut raw = match self.raw.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let mut changed = false;
        for (key, rev, obj) in changes {
            if is_rbac_key(&key) {
                changed |= raw.put(&key, rev, obj);
            }
        }
        if changed {
            // Built under the raw lock so snapshots are published in the order of changes.
            let snap = Arc::new(Snapshot::build(&raw.objects));
            match self.snapshot.write() {
                Ok(mut w) => *w = snap,
                Err(p) => *p.into_inner() = snap,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn key(plural: &str, ns: &str, name: &str) -> String {
        format!("{}{ns}/{name}", storage_prefix(GROUP, plural))
    }

    fn index(objs: Vec<(&str, Value)>) -> Index {
        let idx = Index::default();
        let changes = objs.into_iter().enumerate().map(|(i, (plural, o))| {
            let ns = meta::meta_str(&o, "namespace").unwrap_or("").to_string();
            (
                key(plural, &ns, meta::name(&o)),
                i as i64 + 1,
                Some(Arc::new(o)),
            )
        });
        idx.apply(changes);
        idx
    }

    fn cm_reader() -> Vec<(&'static str, Value)> {
        vec![
            (
                "roles",
                json!({"metadata": {"name": "cm-reader", "namespace": "team"}, "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            ),
            (
                "rolebindings",
                json!({"metadata": {"name": "alice-reads", "namespace": "team"}, "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "cm-reader"}, "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
        ]
    }

    #[test]
    fn role_binding_grants_only_in_its_namespace() {
        let idx = index(cm_reader());
        let s = idx.snapshot();
        let alice = user("alice", &["system:authenticated"]);
        let d = s.authorize(
            &alice,
            &Attributes::resource("list", "", "configmaps", "team"),
        );
        assert!(d.allowed);
        assert_eq!(
            d.reason,
            r#"RBAC: allowed by RoleBinding "alice-reads/team" of Role "cm-reader" to User "alice""#
        );
        for a in [
            Attributes::resource("list", "", "configmaps", "other"),
            Attributes::resource("list", "", "configmaps", ""),
            Attributes::resource("create", "", "configmaps", "team"),
            Attributes::resource("get", "", "secrets", "team"),
        ] {
            assert!(!s.authorize(&alice, &a).allowed, "{a:?}");
        }
        assert!(
            !s.authorize(
                &user("bob", &[]),
                &Attributes::resource("list", "", "configmaps", "team")
            )
            .allowed
        );
    }

    #[test]
    fn subjects_groups_and_service_accounts() {
        let idx = index(vec![
            (
                "clusterroles",
                json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}]}),
            ),
            (
                "clusterrolebindings",
                json!({"metadata": {"name": "devs"}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "Group", "name": "devs"}]}),
            ),
            (
                "rolebindings",
                json!({"metadata": {"name": "sa", "namespace": "ns1"}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "ServiceAccount", "name": "robot"}]}),
            ),
        ]);
        let s = idx.snapshot();
        let get = |ns: &str| Attributes::resource("get", "", "pods", ns);
        assert!(s.authorize(&user("carol", &["devs"]), &get("")).allowed);
        let robot = user("system:serviceaccount:ns1:robot", &[]);
        assert!(s.authorize(&robot, &get("ns1")).allowed);
        assert!(
            !s.authorize(&robot, &get("ns2")).allowed,
            "a RoleBinding of a ClusterRole grants in its namespace only"
        );
        assert!(
            !s.authorize(&user("system:serviceaccount:ns2:robot", &[]), &get("ns1"))
                .allowed
        );
    }

    #[test]
    fn missing_roles_are_reported_and_deletions_win_over_late_writes() {
        let mut objs = cm_reader();
        objs.remove(0);
        let idx = index(objs);
        let d = idx.snapshot().authorize(
            &user("alice", &[]),
            &Attributes::resource("get", "", "configmaps", "team"),
        );
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            r#"RBAC: role.rbac.authorization.k8s.io "cm-reader" not found"#
        );
        let idx = index(cm_reader());
        let k = key("rolebindings", "team", "alice-reads");
        idx.apply([(k.clone(), 10, None)]);
        let (_, o) = &cm_reader()[1];
        idx.apply([(k, 5, Some(Arc::new(o.clone())))]);
        assert!(
            !idx.snapshot()
                .authorize(
                    &user("alice", &[]),
                    &Attributes::resource("get", "", "configmaps", "team")
                )
                .allowed
        );
    }

    #[test]
    fn aggregated_cluster_roles_follow_label_selectors_in_chains() {
        let agg = |name: &str, label: &str| json!({"metadata": {"name": name}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}, "rules": []});
        let idx = index(vec![
            ("clusterroles", agg("view", "to-view")),
            ("clusterroles", agg("edit", "to-edit")),
            (
                "clusterroles",
                json!({"metadata": {"name": "v", "labels": {"to-view": "true", "to-edit": "true"}}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            ),
            (
                "clusterroles",
                json!({"metadata": {"name": "e", "labels": {"to-edit": "true"}}, "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            ),
            (
                "clusterroles",
                json!({"metadata": {"name": "admin", "labels": {}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-admin": "true"}}]}}),
            ),
            (
                "clusterroles",
                json!({"metadata": {"name": "edit-to-admin", "labels": {"to-admin": "true"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-edit": "true"}}]}}),
            ),
        ]);
        let s = idx.snapshot();
        assert_eq!(s.rules_of("ClusterRole", "", "view").unwrap().len(), 1);
        assert_eq!(s.rules_of("ClusterRole", "", "edit").unwrap().len(), 2);
        assert_eq!(
            s.rules_of("ClusterRole", "", "admin").unwrap().len(),
            2,
            "admin aggregates an aggregated role"
        );
    }
}
