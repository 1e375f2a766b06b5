//! RBAC policy rules and the request attributes they are matched against, with the matching
//! semantics of Kubernetes' RBAC authorizer (`*` wildcards, `*/subresource`, resourceNames,
//! nonResourceURLs with a trailing `*`).

use serde_json::{Value, json};

/// What a request asks to do, in the terms RBAC rules speak.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// False for non-resource paths (`/healthz`, `/api`, `/openapi/v3`, ...).
    pub resource_request: bool,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    /// The request path; matched by nonResourceURLs.
    pub path: String,
}

impl Attributes {
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            ..Default::default()
        }
    }

    pub fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// `resource/subresource`, the form rules name subresources in.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// One `PolicyRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl Rule {
    pub fn from_value(v: &Value) -> Rule {
        Rule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    /// The rules of a Role or ClusterRole object.
    pub fn list_from(obj: &Value) -> Vec<Rule> {
        obj.get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Rule::from_value).collect())
            .unwrap_or_default()
    }

    pub fn allows(&self, a: &Attributes) -> bool {
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        if a.resource_request {
            has(&self.api_groups, &a.group)
                && self.resource_matches(a)
                && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
        } else {
            self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || *u == a.path
                    || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
            })
        }
    }

    fn resource_matches(&self, a: &Attributes) -> bool {
        let combined = a.combined_resource();
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                // `*/status` grants the status subresource of every resource.
                || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(&a.subresource))
        })
    }

    /// Whether every request this rule allows is also allowed by one of `by`. Used for the
    /// escalation check: nobody may grant what they do not hold. Exact for the common shapes;
    /// a rule is split into (verb, group, resource, name) or (verb, url) atoms and each atom
    /// must be covered by one rule, treating `*` in the atom literally.
    pub fn covered_by(&self, by: &[Rule]) -> bool {
        let names: Vec<&str> = if self.resource_names.is_empty() {
            vec![""]
        } else {
            self.resource_names.iter().map(String::as_str).collect()
        };
        for verb in &self.verbs {
            for group in &self.api_groups {
                for resource in &self.resources {
                    for name in &names {
                        if !by
                            .iter()
                            .any(|r| r.covers_atom(verb, group, resource, name))
                        {
                            return false;
                        }
                    }
                }
            }
            for url in &self.non_resource_urls {
                if !by.iter().any(|r| r.covers_url(verb, url)) {
                    return false;
                }
            }
        }
        true
    }

    fn covers_atom(&self, verb: &str, group: &str, resource: &str, name: &str) -> bool {
        let res_ok = self.resources.iter().any(|r| {
            r == "*"
                || r == resource
                || (r.starts_with("*/")
                    && resource
                        .split_once('/')
                        .is_some_and(|(_, sub)| r.strip_prefix("*/") == Some(sub)))
        });
        has(&self.verbs, verb)
            && has(&self.api_groups, group)
            && res_ok
            && (self.resource_names.is_empty()
                || (!name.is_empty() && self.resource_names.iter().any(|n| n == name)))
    }

    fn covers_url(&self, verb: &str, url: &str) -> bool {
        has(&self.verbs, verb)
            && self.non_resource_urls.iter().any(|u| {
                u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
            })
    }

    /// As a `PolicyRule` object (empty lists left out, as the API serves them).
    pub fn to_json(&self) -> Value {
        let mut r = serde_json::Map::new();
        for (k, v) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !v.is_empty() || k == "verbs" {
                r.insert(k.into(), json!(v));
            }
        }
        Value::Object(r)
    }

    /// As a SelfSubjectRulesReview `resourceRules` entry (None when the rule has no resources).
    pub fn resource_rule_json(&self) -> Option<Value> {
        if self.resources.is_empty() {
            return None;
        }
        let mut r =
            json!({"verbs": self.verbs, "apiGroups": self.api_groups, "resources": self.resources});
        if !self.resource_names.is_empty() {
            r["resourceNames"] = json!(self.resource_names);
        }
        Some(r)
    }

    /// As a SelfSubjectRulesReview `nonResourceRules` entry.
    pub fn non_resource_rule_json(&self) -> Option<Value> {
        if self.non_resource_urls.is_empty() {
            return None;
        }
        Some(json!({"verbs": self.verbs, "nonResourceURLs": self.non_resource_urls}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> Rule {
        Rule::from_value(&v)
    }

    fn named(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            name: name.into(),
            ..Attributes::resource(verb, group, resource, ns)
        }
    }

    #[test]
    fn verbs_groups_and_resources_match_exactly_or_by_wildcard() {
        let r =
            rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}));
        assert!(r.allows(&Attributes::resource("get", "", "configmaps", "a")));
        assert!(r.allows(&Attributes::resource("list", "", "configmaps", "")));
        assert!(!r.allows(&Attributes::resource("watch", "", "configmaps", "a")));
        assert!(!r.allows(&Attributes::resource("get", "", "secrets", "a")));
        assert!(!r.allows(&Attributes::resource("get", "apps", "configmaps", "a")));
        let all = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        assert!(all.allows(&Attributes::resource(
            "deletecollection",
            "x.io",
            "things",
            ""
        )));
        assert!(
            !all.allows(&Attributes::non_resource("get", "/healthz")),
            "resource rules never grant paths"
        );
    }

    #[test]
    fn subresources_need_their_own_grant_or_a_star_prefix() {
        let main = rule(
            json!({"verbs": ["patch"], "apiGroups": ["app.rancherdesktop.io"], "resources": ["apps"]}),
        );
        let mut status = Attributes::resource("patch", "app.rancherdesktop.io", "apps", "");
        status.subresource = "status".into();
        assert!(!main.allows(&status));
        let sub = rule(
            json!({"verbs": ["patch"], "apiGroups": ["app.rancherdesktop.io"], "resources": ["apps/status"]}),
        );
        assert!(sub.allows(&status));
        assert!(!sub.allows(&Attributes::resource(
            "patch",
            "app.rancherdesktop.io",
            "apps",
            ""
        )));
        let star = rule(json!({"verbs": ["patch"], "apiGroups": ["*"], "resources": ["*/status"]}));
        assert!(star.allows(&status));
        let mut scale = status.clone();
        scale.subresource = "scale".into();
        assert!(!star.allows(&scale));
    }

    #[test]
    fn resource_names_restrict_to_named_requests() {
        let r = rule(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"]}),
        );
        assert!(r.allows(&named("get", "", "configmaps", "a", "one")));
        assert!(!r.allows(&named("get", "", "configmaps", "a", "two")));
        assert!(
            !r.allows(&Attributes::resource("list", "", "configmaps", "a")),
            "a list names no object"
        );
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix_star() {
        let r = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*", "/api"]}));
        assert!(r.allows(&Attributes::non_resource("get", "/healthz")));
        assert!(!r.allows(&Attributes::non_resource("get", "/healthz/ping")));
        assert!(r.allows(&Attributes::non_resource("get", "/apis/apps/v1")));
        assert!(r.allows(&Attributes::non_resource("get", "/api")));
        assert!(!r.allows(&Attributes::non_resource("get", "/api/v1")));
        assert!(!r.allows(&Attributes::non_resource("post", "/healthz")));
        let all = rule(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        assert!(all.allows(&Attributes::non_resource("delete", "/anything")));
        assert!(!all.allows(&Attributes::resource("get", "", "pods", "")));
    }

    #[test]
    fn coverage_for_escalation_checks() {
        let held = vec![
            rule(
                json!({"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps", "secrets"]}),
            ),
            rule(json!({"verbs": ["patch"], "apiGroups": ["*"], "resources": ["*/status"]})),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]})),
        ];
        let ok = rule(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"]}),
        );
        assert!(ok.covered_by(&held));
        let status = rule(
            json!({"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["deployments/status"]}),
        );
        assert!(status.covered_by(&held));
        let more = rule(
            json!({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["configmaps"]}),
        );
        assert!(!more.covered_by(&held));
        let star = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*"]}));
        assert!(
            !star.covered_by(&held),
            "a wildcard is only covered by a wildcard"
        );
        let url = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/apis/apps"]}));
        assert!(url.covered_by(&held));
        let url = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}));
        assert!(!url.covered_by(&held));
        let named_held = vec![rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"]}),
        )];
        let unnamed =
            rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}));
        assert!(!unnamed.covered_by(&named_held));
    }
}
