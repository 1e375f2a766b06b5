//! ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1): bound policies evaluated with
//! CEL (kube-cel) on every write, dry runs included, after schema validation.
//!
//! | binding → policy matches the request | validations | action                      |
//! |--------------------------------------|-------------|-----------------------------|
//! | no                                   | —           | nothing                     |
//! | yes, matchConditions false           | —           | nothing                     |
//! | yes                                  | all pass    | nothing                     |
//! | yes                                  | one fails   | Deny → 422/403, Warn → Warning header, Audit → log |
//! | yes                                  | error       | failurePolicy Fail → deny, Ignore → nothing |

use std::sync::Arc;

use serde_json::Value;

use crate::error::ApiError;
use crate::registry::Resource;
use crate::selector::LabelSelector;
use crate::server::State;

/// A policy with the bindings that name it.
#[derive(Debug, Clone)]
pub struct Bound {
    pub policy: Value,
    pub bindings: Vec<Value>,
}

/// The write being admitted.
pub struct Request<'a> {
    pub operation: &'a str,
    pub res: &'a Resource,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub user: &'a crate::auth::UserInfo,
    pub dry_run: bool,
    /// CreateOptions, UpdateOptions, PatchOptions or DeleteOptions, as webhooks receive them.
    pub options: &'a Value,
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn any_of(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

fn rule_matches(rule: &Value, req: &Request<'_>) -> bool {
    let resource = match req.subresource {
        Some(s) => format!("{}/{s}", req.res.plural),
        None => req.res.plural.clone(),
    };
    let resources = strs(rule.get("resources"));
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == resource
            || (req.subresource.is_some() && r.strip_prefix("*/") == req.subresource)
    });
    let names = strs(rule.get("resourceNames"));
    any_of(&strs(rule.get("apiGroups")), &req.res.group)
        && any_of(&strs(rule.get("apiVersions")), &req.res.version)
        && any_of(&strs(rule.get("operations")), req.operation)
        && resource_ok
        && (names.is_empty() || names.iter().any(|n| n == req.name))
}

/// A Kubernetes LabelSelector (matchLabels + matchExpressions) in our selector syntax.
pub(crate) fn label_selector(sel: &Value) -> Result<LabelSelector, ApiError> {
    let mut terms = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            terms.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values = strs(e.get("values")).join(",");
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => terms.push(format!("{key} in ({values})")),
            "NotIn" => terms.push(format!("{key} notin ({values})")),
            "Exists" => terms.push(key.to_string()),
            "DoesNotExist" => terms.push(format!("!{key}")),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other:?} is not a valid label selector operator"
                )));
            }
        }
    }
    LabelSelector::parse(&terms.join(","))
}

pub(crate) fn selector_matches(
    sel: Option<&Value>,
    labels: Option<&serde_json::Map<String, Value>>,
) -> bool {
    let Some(sel) = sel.filter(|s| s.as_object().is_some_and(|o| !o.is_empty())) else {
        return true;
    };
    label_selector(sel)
        .map(|s| s.matches(labels))
        .unwrap_or(false)
}

/// The resource rules of a matchConstraints / matchResources minus its exclusions.
fn rules_match(m: &Value, req: &Request<'_>) -> bool {
    let rules = m.get("resourceRules").and_then(Value::as_array);
    if let Some(rules) = rules
        && !rules.iter().any(|r| rule_matches(r, req))
    {
        return false;
    }
    !m.get("excludeResourceRules")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|r| rule_matches(r, req)))
}

/// matchConstraints / matchResources: resource rules minus exclusions, object selector.
fn resources_match(
    m: &Value,
    req: &Request<'_>,
    ns_labels: Option<&serde_json::Map<String, Value>>,
) -> bool {
    if !rules_match(m, req) {
        return false;
    }
    let obj = req.object.or(req.old_object);
    let labels = obj.and_then(crate::meta::labels);
    if !selector_matches(m.get("objectSelector"), labels) {
        return false;
    }
    // Cluster-scoped objects are not filtered by a namespace selector (as upstream).
    req.namespace.is_empty() || selector_matches(m.get("namespaceSelector"), ns_labels)
}

/// The `request` variable (admission.k8s.io/v1 AdmissionRequest, the fields policies read).
pub(crate) fn request_json(req: &Request<'_>) -> Value {
    serde_json::json!({
        "operation": req.operation,
        "name": req.name,
        "namespace": req.namespace,
        "dryRun": req.dry_run,
        "subResource": req.subresource.unwrap_or(""),
        "kind": {"group": req.res.group, "version": req.res.version, "kind": req.res.kind},
        "resource": {"group": req.res.group, "version": req.res.version, "resource": req.res.plural},
        "userInfo": {"username": req.user.username, "uid": req.user.uid, "groups": req.user.groups},
    })
}

/// The CEL standard library and the Kubernetes extensions, built once: every evaluation is a
/// child scope of it that only adds its variables.
static BASE: std::sync::LazyLock<kube_cel::cel::Context<'static>> =
    std::sync::LazyLock::new(|| {
        use kube_cel::KubeCelExt;
        kube_cel::cel::Context::default().with_all()
    });

/// Programs compiled so far, by expression. Policies are few and change rarely, so parsing each
/// expression once instead of on every request is what matters; the bound only keeps a stream
/// of distinct expressions (policies rewritten in a loop) from growing it without end.
static PROGRAMS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Arc<kube_cel::cel::Program>>>,
> = std::sync::LazyLock::new(Default::default);
const PROGRAMS_MAX: usize = 1024;

fn program(expr: &str) -> Result<Arc<kube_cel::cel::Program>, String> {
    let cached = PROGRAMS
        .lock()
        .map_err(|_| "CEL program cache poisoned".to_string())?
        .get(expr)
        .cloned();
    if let Some(p) = cached {
        return Ok(p);
    }
    let p = Arc::new(
        kube_cel::cel::Program::compile(expr).map_err(|e| format!("compilation error: {e}"))?,
    );
    let mut cache = PROGRAMS
        .lock()
        .map_err(|_| "CEL program cache poisoned".to_string())?;
    if cache.len() >= PROGRAMS_MAX {
        cache.clear();
    }
    cache.insert(expr.to_string(), p.clone());
    Ok(p)
}

/// CEL evaluation over plain JSON: map keys (labels, annotations, data) stay as written, which
/// is how the API server presents typed objects to policies. (kube-cel's VapEvaluator escapes
/// every key, which breaks `'a.b/c' in object.metadata.annotations`.)
pub(crate) struct Eval {
    ctx: kube_cel::cel::Context<'static>,
    variables: std::collections::HashMap<String, kube_cel::cel::Value>,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    True,
    False,
    Error(String),
}

impl Eval {
    pub(crate) fn new(vars: &[(&str, Value)]) -> Result<Eval, String> {
        let mut ctx = BASE.new_inner_scope();
        for (name, v) in vars {
            let cv = kube_cel::cel::to_value(v).map_err(|e| e.to_string())?;
            ctx.add_variable_from_value(*name, cv);
        }
        Ok(Eval {
            ctx,
            variables: Default::default(),
        })
    }

    fn value(&self, expr: &str) -> Result<kube_cel::cel::Value, String> {
        let program = program(expr)?;
        program
            .execute(&self.ctx)
            .map_err(|e| format!("evaluation error: {e}"))
    }

    pub(crate) fn check(&self, expr: &str) -> Outcome {
        match self.value(expr) {
            Ok(kube_cel::cel::Value::Bool(true)) => Outcome::True,
            Ok(kube_cel::cel::Value::Bool(false)) => Outcome::False,
            Ok(other) => Outcome::Error(format!("expression returned non-boolean: {other:?}")),
            Err(e) => Outcome::Error(e),
        }
    }

    fn message(&self, expr: &str) -> Option<String> {
        match self.value(expr) {
            Ok(kube_cel::cel::Value::String(s)) => Some(s.to_string()),
            _ => None,
        }
    }

    /// `spec.variables`, in order, each able to use the ones before it.
    fn with_variables(mut self, vars: Option<&Value>) -> Result<Eval, String> {
        for v in vars.and_then(Value::as_array).into_iter().flatten() {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            let expr = v.get("expression").and_then(Value::as_str).unwrap_or("");
            let value = self.value(expr)?;
            self.variables.insert(name.to_string(), value);
            self.ctx.add_variable_from_value(
                "variables",
                kube_cel::cel::Value::from(self.variables.clone()),
            );
        }
        Ok(self)
    }
}

fn deny(reason: &str, text: String, req: &Request<'_>) -> ApiError {
    // Upstream carries the text as a cause with no field as well; kubectl prints an Invalid
    // error from its causes ("The x "y" is invalid: : <text>").
    let cause = crate::error::Cause {
        reason: String::new(),
        message: text.clone(),
        field: String::new(),
    };
    let mut e = match reason {
        "Forbidden" => ApiError::forbidden(text),
        "Unauthorized" => ApiError::new(401, "Unauthorized", text),
        "RequestEntityTooLarge" => ApiError::too_large(text),
        _ => ApiError::new(422, "Invalid", text),
    };
    e.name = Some(req.name.to_string());
    e.group = Some(req.res.group.clone());
    e.kind = Some(req.res.plural.clone());
    e.causes = vec![cause];
    e
}

/// Run every bound policy that matches. Deny returns an error; Warn adds to `warnings`.
pub async fn admit(
    state: &Arc<State>,
    req: &Request<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    crate::authz::escalation::check(state, req)?;
    let policies = state.policies();
    // Most writes (status writes above all) match no policy: they skip the namespace read.
    if !policies.iter().any(|b| {
        b.policy["spec"]
            .get("matchConstraints")
            .is_some_and(|m| rules_match(m, req))
    }) {
        return Ok(());
    }
    let ns_obj = if req.namespace.is_empty() {
        None
    } else {
        let key = crate::registry::storage_prefix("", "namespaces") + "/" + req.namespace;
        state
            .store
            .get(&key)
            .await?
            .map(|r| r.value.as_ref().clone())
    };
    let ns_labels = ns_obj.as_ref().and_then(crate::meta::labels);
    for b in policies.iter() {
        let spec = &b.policy["spec"];
        let pname = crate::meta::name(&b.policy).to_string();
        if !spec
            .get("matchConstraints")
            .is_some_and(|m| resources_match(m, req, ns_labels))
        {
            continue;
        }
        let fail_closed = spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
        for binding in &b.bindings {
            let bname = crate::meta::name(binding).to_string();
            if binding
                .pointer("/spec/matchResources")
                .is_some_and(|m| !resources_match(m, req, ns_labels))
            {
                continue;
            }
            let who = format!("ValidatingAdmissionPolicy '{pname}' with binding '{bname}'");
            let params = match params(state, spec, binding, req).await {
                Ok(p) => p,
                Err(e) if fail_closed => {
                    return Err(deny(
                        "Forbidden",
                        format!("{who} denied request: failed to configure binding: {e}"),
                        req,
                    ));
                }
                Err(e) => {
                    tracing::warn!(policy = %pname, binding = %bname, error = %e, "admission policy binding ignored (failurePolicy Ignore)");
                    continue;
                }
            };
            // Every param object is evaluated; the results are ANDed (upstream).
            for param in params {
                let binding = Evaluation {
                    spec,
                    binding,
                    who: &who,
                    pname: &pname,
                    bname: &bname,
                    fail_closed,
                };
                binding.run(req, param, ns_obj.as_ref(), warnings)?;
            }
        }
    }
    Ok(())
}

/// One policy under one binding with one param object.
struct Evaluation<'a> {
    spec: &'a Value,
    binding: &'a Value,
    who: &'a str,
    pname: &'a str,
    bname: &'a str,
    fail_closed: bool,
}

impl Evaluation<'_> {
    fn run(
        &self,
        req: &Request<'_>,
        param: Value,
        ns_obj: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let (spec, who) = (self.spec, self.who);
        let vars = [
            ("object", req.object.cloned().unwrap_or(Value::Null)),
            ("oldObject", req.old_object.cloned().unwrap_or(Value::Null)),
            ("request", request_json(req)),
            ("params", param),
            ("namespaceObject", ns_obj.cloned().unwrap_or(Value::Null)),
        ];
        let eval = match Eval::new(&vars).and_then(|e| e.with_variables(spec.get("variables"))) {
            Ok(e) => e,
            Err(e) if self.fail_closed => {
                return Err(deny("Forbidden", format!("{who} denied request: {e}"), req));
            }
            Err(_) => return Ok(()),
        };
        for c in spec
            .get("matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match eval.check(c.get("expression").and_then(Value::as_str).unwrap_or("")) {
                Outcome::True => {}
                Outcome::False => return Ok(()),
                Outcome::Error(_) if !self.fail_closed => return Ok(()),
                Outcome::Error(e) => {
                    return Err(deny("Forbidden", format!("{who} denied request: {e}"), req));
                }
            }
        }
        let actions = strs(self.binding.pointer("/spec/validationActions"));
        for v in spec
            .get("validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = v.get("expression").and_then(Value::as_str).unwrap_or("");
            let msg = match eval.check(expr) {
                Outcome::True => continue,
                Outcome::Error(_) if !self.fail_closed => continue,
                Outcome::Error(e) => e,
                Outcome::False => v
                    .get("messageExpression")
                    .and_then(Value::as_str)
                    .and_then(|m| eval.message(m))
                    .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| format!("failed expression: {expr}")),
            };
            if actions.iter().any(|a| a == "Warn") {
                warnings.push(format!("Validation failed for {who}: {msg}"));
            }
            if actions.iter().any(|a| a == "Audit") {
                tracing::info!(policy = %self.pname, binding = %self.bname, message = %msg, "admission policy audit");
            }
            if actions.iter().any(|a| a == "Deny") {
                let reason = v.get("reason").and_then(Value::as_str).unwrap_or("Invalid");
                return Err(deny(reason, format!("{who} denied request: {msg}"), req));
            }
        }
        Ok(())
    }
}

fn nonempty<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The param objects a binding evaluates its policy with:
///
/// | policy `paramKind` | binding `paramRef`              | params                                  |
/// |--------------------|---------------------------------|-----------------------------------------|
/// | unset              | anything (ignored)              | one evaluation, `params` null           |
/// | set                | unset / kind not served         | error → failurePolicy                   |
/// | set                | `name` / `selector` finds some  | each object found                       |
/// | set                | finds none, `Allow`             | none: the binding admits                |
/// | set                | finds none, `Deny` (or unset)   | error → failurePolicy                   |
///
/// A namespaced paramKind is looked up in `paramRef.namespace`, else the request's namespace
/// (an error for cluster-scoped requests); a cluster-scoped one must not name a namespace.
async fn params(
    state: &Arc<State>,
    spec: &Value,
    binding: &Value,
    req: &Request<'_>,
) -> Result<Vec<Value>, String> {
    let Some(kind) = spec.get("paramKind").filter(|k| k.is_object()) else {
        return Ok(vec![Value::Null]);
    };
    let api_version = kind.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = kind.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(pref) = binding.pointer("/spec/paramRef").filter(|p| p.is_object()) else {
        return Err(format!(
            "paramKind {api_version}, Kind={kind_name} is set but the binding has no paramRef"
        ));
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let res = state
        .registry()
        .by_kind(group, version, kind_name)
        .ok_or_else(|| {
            format!(
                "failed to find resource referenced by paramKind: '{api_version}, Kind={kind_name}'"
            )
        })?;
    let ns = match (res.namespaced, nonempty(pref, "namespace")) {
        (true, Some(ns)) => ns.to_string(),
        (true, None) if !req.namespace.is_empty() => req.namespace.to_string(),
        (true, None) => {
            return Err(
                "cannot use a namespaced paramKind without paramRef.namespace for a cluster-scoped request"
                    .into(),
            );
        }
        (false, Some(_)) => {
            return Err("paramRef.namespace must not be set for a cluster-scoped paramKind".into());
        }
        (false, None) => String::new(),
    };
    let rows = match (
        nonempty(pref, "name"),
        pref.get("selector").filter(|s| s.is_object()),
    ) {
        (Some(name), None) => state
            .store
            .get(&res.key(&ns, name))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect::<Vec<_>>(),
        (None, Some(sel)) => {
            let sel = label_selector(sel).map_err(|e| e.message.clone())?;
            let (rows, _, _) = state
                .store
                .list(&res.prefix(&ns), 0, None, 0)
                .await
                .map_err(|e| e.to_string())?;
            rows.into_iter()
                .filter(|r| sel.matches(crate::meta::labels(&r.value)))
                .collect()
        }
        _ => return Err("paramRef needs exactly one of name and selector".into()),
    };
    if rows.is_empty() {
        return match pref.get("parameterNotFoundAction").and_then(Value::as_str) {
            Some("Allow") => Ok(Vec::new()),
            _ => {
                Err("no params found for policy binding with `Deny` parameterNotFoundAction".into())
            }
        };
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut v = r.value.as_ref().clone();
            v["apiVersion"] = Value::String(api_version.to_string());
            v["kind"] = Value::String(kind_name.to_string());
            crate::meta::meta_mut(&mut v)
                .insert("resourceVersion".into(), Value::String(r.rev.to_string()));
            v
        })
        .collect())
}

/// Bound policies from storage: every policy with at least one binding naming it.
pub async fn load(state: &State) -> Result<Vec<Bound>, ApiError> {
    let ps = crate::registry::storage_prefix(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    );
    let bs = crate::registry::storage_prefix(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    );
    let (policies, _, _) = state.store.list(&ps, 0, None, 0).await?;
    let (bindings, _, _) = state.store.list(&bs, 0, None, 0).await?;
    let mut out = Vec::new();
    for p in policies {
        let name = crate::meta::name(&p.value).to_string();
        let bound: Vec<Value> = bindings
            .iter()
            .filter(|b| {
                b.value.pointer("/spec/policyName").and_then(Value::as_str) == Some(name.as_str())
            })
            .map(|b| b.value.as_ref().clone())
            .collect();
        if !bound.is_empty() {
            out.push(Bound {
                policy: p.value.as_ref().clone(),
                bindings: bound,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_in_kubernetes_form() {
        let labels = json!({"a": "1", "b": "2"});
        let l = labels.as_object();
        assert!(selector_matches(
            Some(&json!({"matchLabels": {"a": "1"}})),
            l
        ));
        assert!(!selector_matches(
            Some(&json!({"matchLabels": {"a": "2"}})),
            l
        ));
        assert!(selector_matches(
            Some(
                &json!({"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]}]})
            ),
            l
        ));
        assert!(selector_matches(
            Some(&json!({"matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]})),
            l
        ));
        assert!(selector_matches(Some(&json!({})), l));
    }
}

#[cfg(test)]
mod eval_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn map_keys_stay_as_written_and_variables_chain() {
        let obj = json!({"metadata": {"name": "x", "annotations": {"containers.rancherdesktop.io/action": "stop"}}});
        let e = Eval::new(&[("object", obj), ("request", json!({"operation": "CREATE"}))])
            .unwrap()
            .with_variables(Some(&json!([{"name": "act", "expression": "object.metadata.annotations['containers.rancherdesktop.io/action']"}])))
            .unwrap();
        assert!(matches!(
            e.check("'containers.rancherdesktop.io/action' in object.metadata.annotations"),
            Outcome::True
        ));
        assert!(matches!(
            e.check("variables.act == 'stop' && request.operation == 'CREATE'"),
            Outcome::True
        ));
        assert!(matches!(
            e.check("object.metadata.name == 'y'"),
            Outcome::False
        ));
        assert!(matches!(e.check("object.nope.deeper"), Outcome::Error(_)));
        assert_eq!(
            e.message("'action ' + variables.act").as_deref(),
            Some("action stop")
        );
    }
}
