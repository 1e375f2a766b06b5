//! Privilege-escalation prevention, as upstream's RBAC storage does it: a Role or ClusterRole
//! may only be written by someone who holds every permission in it (or may `escalate`), and a
//! binding only by someone who holds every permission of the role it names (or may `bind`
//! that role). Without this, permission to write RBAC objects would be cluster-admin.

use serde_json::Value;

use super::index::GROUP;
use super::rules::{Attributes, Rule};
use crate::admission::Request;
use crate::error::ApiError;
use crate::server::State;

pub fn check(state: &State, req: &Request<'_>) -> Result<(), ApiError> {
    if req.res.group != GROUP
        || req.subresource.is_some()
        || !matches!(req.operation, "CREATE" | "UPDATE")
    {
        return Ok(());
    }
    let Some(obj) = req.object else {
        return Ok(());
    };
    let z = &state.authz;
    let plural = req.res.plural.as_str();
    let allowed_to = |verb: &str, resource: &str, name: &str| {
        let mut a = Attributes::resource(verb, GROUP, resource, req.namespace);
        a.name = name.to_string();
        z.authorize(req.user, &a).allowed
    };
    let wanted: Vec<Rule> = match plural {
        "roles" | "clusterroles" => {
            if allowed_to("escalate", plural, req.name) {
                return Ok(());
            }
            let mut rules = Rule::list_from(obj);
            if plural == "clusterroles" && obj.get("aggregationRule").is_some_and(|a| !a.is_null())
            {
                // What an aggregated role will hold is not known at write time.
                rules.push(Rule {
                    verbs: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    resources: vec!["*".into()],
                    ..Default::default()
                });
            }
            rules
        }
        "rolebindings" | "clusterrolebindings" => {
            let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
            let (kind, name) = (s("/roleRef/kind"), s("/roleRef/name"));
            let role_resource = if kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if allowed_to("bind", role_resource, name) {
                return Ok(());
            }
            match z.snapshot().rules_of(kind, req.namespace, name) {
                Some(r) => r.as_ref().clone(),
                None => return Err(ApiError::not_found(GROUP, role_resource, name)),
            }
        }
        _ => return Ok(()),
    };
    let (held, _) = z.rules_for(req.user, req.namespace);
    let missing: Vec<&Rule> = wanted.iter().filter(|r| !r.covered_by(&held)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::forbidden(format!(
        "{}.{GROUP} {:?} is forbidden: user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        plural,
        req.name,
        req.user.username,
        go_quoted(&req.user.groups),
        missing
            .iter()
            .map(|r| describe(r))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    e.name = Some(req.name.to_string());
    e.group = Some(GROUP.into());
    e.kind = Some(plural.into());
    Err(e)
}

fn go_quoted(list: &[String]) -> String {
    format!(
        "[{}]",
        list.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Upstream's compact rule form: `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`.
fn describe(r: &Rule) -> String {
    let mut parts = Vec::new();
    let mut field = |name: &str, v: &[String]| {
        if !v.is_empty() {
            let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            parts.push(format!("{name}:[{}]", items.join(", ")));
        }
    };
    field("APIGroups", &r.api_groups);
    field("Resources", &r.resources);
    field("ResourceNames", &r.resource_names);
    field("NonResourceURLs", &r.non_resource_urls);
    field("Verbs", &r.verbs);
    format!("{{{}}}", parts.join(", "))
}
