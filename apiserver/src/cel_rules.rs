//! A CRD version's `x-kubernetes-validations`, compiled once and evaluated only where they can
//! matter.
//!
//! kube-cel evaluates a compiled schema by converting the value at every schema node it walks
//! into a CEL value, rules or not; from the object's root that is the whole object once per
//! level of nesting, on every write. Most of a typical object (metadata, status) carries no
//! rule, so the schema is split once, at registration, into *rule roots*: the outermost nodes,
//! reached from the object's root through plain properties, below which every rule sits. Only
//! those subtrees are handed to kube-cel.
//!
//! | node                                                        | becomes                     |
//! |-------------------------------------------------------------|-----------------------------|
//! | no rule anywhere below it                                   | nothing (never walked)      |
//! | carries rules, or reaches rules through items, additionalProperties or allOf/anyOf/oneOf | a rule root (its whole subtree) |
//! | rules only below some of its plain properties               | split further at those      |
//!
//! On an update, a rule root whose value is unchanged and whose rules never read `oldSelf` is
//! skipped: upstream ignores errors of unchanged values (validation ratcheting, GA in 1.33),
//! and a status write — the bulk of controller traffic — leaves `spec` untouched. Transition
//! rules are always evaluated, as upstream does.

use serde_json::Value;

thread_local! {
    // The CEL context with the Kubernetes libraries, built once per worker thread.
    static CEL: kube_cel::Validator = kube_cel::Validator::new();
}

/// One rule root: where it sits and its compiled subtree.
#[derive(Debug)]
struct Root {
    /// Property names from the object's root.
    path: Vec<String>,
    compiled: kube_cel::CompiledSchema,
    /// Some rule in the subtree reads `oldSelf`.
    transition: bool,
}

/// The compiled rules of one CRD version.
#[derive(Debug)]
pub struct CelRules {
    roots: Vec<Root>,
}

/// A failed rule, with its field path from the object's root (empty for a root-level rule).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub field: String,
    pub message: String,
    pub reason: Option<String>,
}

/// Some node of `schema` carries `x-kubernetes-validations`.
pub(crate) fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(o) => o.contains_key("x-kubernetes-validations") || o.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

fn transition(c: &kube_cel::CompiledSchema) -> bool {
    c.validations
        .iter()
        .any(|r| r.as_ref().is_ok_and(|r| r.is_transition_rule))
        || c.properties.values().any(transition)
        || c.items.as_deref().is_some_and(transition)
        || c.additional_properties.as_deref().is_some_and(transition)
        || c.all_of
            .iter()
            .chain(&c.one_of)
            .chain(&c.any_of)
            .any(transition)
}

fn split(schema: &Value, path: &mut Vec<String>, out: &mut Vec<Root>) {
    if !has_rules(schema) {
        return;
    }
    let o = schema.as_object();
    let whole = o.is_some_and(|o| {
        o.contains_key("x-kubernetes-validations")
            || [
                "items",
                "additionalProperties",
                "allOf",
                "anyOf",
                "oneOf",
                "not",
            ]
            .iter()
            .any(|k| o.get(*k).is_some_and(has_rules))
    });
    let props = o
        .and_then(|o| o.get("properties"))
        .and_then(Value::as_object);
    match props {
        Some(props) if !whole => {
            for (name, child) in props {
                path.push(name.clone());
                split(child, path, out);
                path.pop();
            }
        }
        _ => {
            let compiled = kube_cel::compile_schema(schema);
            out.push(Root {
                path: path.clone(),
                transition: transition(&compiled),
                compiled,
            });
        }
    }
}

fn at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, p| v.get(p))
}

impl CelRules {
    /// `None` when the schema carries no rule: such versions pay nothing for CEL at write time.
    pub fn compile(schema: &Value) -> Option<CelRules> {
        let mut roots = Vec::new();
        split(schema, &mut Vec::new(), &mut roots);
        (!roots.is_empty()).then_some(CelRules { roots })
    }

    /// Evaluate every rule that can matter for `obj` (`old` on updates; transition rules see
    /// it).
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Failure> {
        let mut out = Vec::new();
        for r in &self.roots {
            let Some(value) = at(obj, &r.path) else {
                continue;
            };
            let old_value = old.and_then(|o| at(o, &r.path));
            if !r.transition && old_value == Some(value) {
                continue;
            }
            let prefix = r.path.join(".");
            let result = CEL.with(|v| v.validate_compiled(&r.compiled, value, old_value));
            let Err(errors) = result else {
                continue;
            };
            for e in errors.into_vec() {
                let field = match (prefix.is_empty(), e.field_path.is_empty()) {
                    (true, _) => e.field_path,
                    (false, true) => prefix.clone(),
                    // A rule's `fieldPath` comes back as written (".x", "['a.b']").
                    (false, false) if e.field_path.starts_with(['[', '.']) => {
                        format!("{prefix}{}", e.field_path)
                    }
                    (false, false) => format!("{prefix}.{}", e.field_path),
                };
                out.push(Failure {
                    field,
                    message: e.message,
                    reason: e.reason,
                });
            }
        }
        out
    }

    /// Where the rule roots sit (for tests and diagnostics).
    pub fn root_paths(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.path.join(".")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "spec is immutable"}],
                    "properties": {"image": {"type": "string"}}
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "ports": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "x-kubernetes-validations": [{"rule": "self.port > 0", "message": "port must be positive"}],
                                "properties": {"port": {"type": "integer"}}
                            }
                        },
                        "phase": {"type": "string"},
                        "limits": {
                            "type": "object",
                            "properties": {
                                "cpu": {
                                    "type": "integer",
                                    "x-kubernetes-validations": [{"rule": "self <= 64", "message": "at most 64"}]
                                }
                            }
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn splits_at_the_outermost_nodes_that_carry_rules() {
        let r = CelRules::compile(&schema()).expect("rules");
        let mut paths = r.root_paths();
        paths.sort();
        assert_eq!(paths, ["spec", "status.limits.cpu", "status.ports"]);
        assert!(
            CelRules::compile(&json!({"type": "object", "properties": {"a": {"type": "string"}}}))
                .is_none()
        );
    }

    #[test]
    fn root_level_rules_keep_the_whole_object() {
        let s = json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.a == self.b", "message": "a must equal b"}],
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}}
        });
        let r = CelRules::compile(&s).expect("rules");
        assert_eq!(r.root_paths(), [""]);
        let f = r.validate(&json!({"a": "x", "b": "y"}), None);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "");
        assert!(r.validate(&json!({"a": "x", "b": "x"}), None).is_empty());
    }

    #[test]
    fn cp_120_failures_carry_paths_from_the_object_root() {
        let r = CelRules::compile(&schema()).expect("rules");
        let obj = json!({"status": {"ports": [{"port": 1}, {"port": 0}], "limits": {"cpu": 65}}});
        let mut f = r.validate(&obj, None);
        f.sort_by(|a, b| a.field.cmp(&b.field));
        let fields: Vec<&str> = f.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["status.limits.cpu", "status.ports[1]"]);
        assert_eq!(f[1].message, "port must be positive");
    }

    #[test]
    fn cp_120_a_rule_field_path_is_joined_to_its_root() {
        let s = json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": "self.replicas <= 3", "message": "too many", "fieldPath": ".replicas"}],
                "properties": {"replicas": {"type": "integer"}}
            }}
        });
        let r = CelRules::compile(&s).expect("rules");
        let f = r.validate(&json!({"spec": {"replicas": 5}}), None);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "spec.replicas");
    }

    #[test]
    fn cp_120_transition_rules_see_the_old_value_and_are_never_skipped() {
        let r = CelRules::compile(&schema()).expect("rules");
        let old = json!({"spec": {"image": "a"}});
        let f = r.validate(&json!({"spec": {"image": "b"}}), Some(&old));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "spec");
        assert_eq!(f[0].message, "spec is immutable");
        assert!(
            r.validate(&json!({"spec": {"image": "a"}}), Some(&old))
                .is_empty()
        );
        // On create there is no old value: transition rules do not run.
        assert!(
            r.validate(&json!({"spec": {"image": "b"}}), None)
                .is_empty()
        );
    }

    #[test]
    fn cp_108_unchanged_values_are_ratcheted_changed_ones_are_not() {
        let r = CelRules::compile(&schema()).expect("rules");
        let bad = json!({"status": {"ports": [{"port": 0}]}});
        // Stored before the rule existed: an update that leaves the value alone passes.
        assert!(r.validate(&bad, Some(&bad)).is_empty());
        // Any change to the value evaluates it again.
        let worse = json!({"status": {"ports": [{"port": 0}, {"port": 0}]}});
        assert_eq!(r.validate(&worse, Some(&bad)).len(), 2);
        assert_eq!(r.validate(&bad, None).len(), 1);
    }
}
