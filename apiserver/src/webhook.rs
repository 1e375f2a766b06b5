//! Admission webhooks (admissionregistration.k8s.io/v1 MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration), called over HTTPS with an `admission.k8s.io/v1`
//! AdmissionReview, as kube-apiserver does.
//!
//! | webhook matches the write (rules, selectors, matchConditions) | outcome of the call            | action                                   |
//! |---------------------------------------------------------------|--------------------------------|------------------------------------------|
//! | no                                                            | —                              | not called                               |
//! | yes, dry run, sideEffects not None/NoneOnDryRun               | —                              | 400, not called                          |
//! | yes                                                           | allowed                        | warnings → `Warning` headers; mutating: JSONPatch applied |
//! | yes                                                           | allowed=false                  | the webhook's Status: `admission webhook "<n>" denied the request: <msg>` |
//! | yes                                                           | unreachable, timeout, bad answer | failurePolicy Fail → 500 `failed calling webhook "<n>": …`, Ignore → skipped |
//!
//! Mutating webhooks run one after another (configurations by name, webhooks in order), each
//! seeing the previous one's patch, before validation; validating webhooks run concurrently
//! after ValidatingAdmissionPolicy. Writes of the admission configuration kinds themselves are
//! never sent to webhooks, so a broken webhook can always be removed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::admission::{Eval, Outcome, Request};
use crate::error::{ApiError, Cause};
use crate::registry::{Registry, Resource};
use crate::selector::LabelSelector;
use crate::server::State;

/// Answers larger than this are refused (an object up to 3 MiB, patched, plus the review).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Kinds whose writes never reach webhooks (upstream exempts them for the same reason: a
/// failing webhook must not be able to prevent its own removal).
const EXEMPT: &[&str] = &[
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
];

/// Why a call did not produce a usable answer; subject to `failurePolicy`.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("failed to call webhook: {0}")]
    Call(String),
    #[error("received invalid webhook response: {0}")]
    Response(String),
}

/// One `rules[]` entry.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub operations: Vec<String>,
    pub groups: Vec<String>,
    pub versions: Vec<String>,
    pub resources: Vec<String>,
    /// `*` (default), `Cluster` or `Namespaced`.
    pub scope: String,
}

/// What a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// Whether the object lives in a namespace (false for Namespaces themselves).
    pub namespaced: bool,
}

fn any_of(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl Rule {
    fn parse(v: &Value) -> Rule {
        Rule {
            operations: strs(v.get("operations")),
            groups: strs(v.get("apiGroups")),
            versions: strs(v.get("apiVersions")),
            resources: strs(v.get("resources")),
            scope: v
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        }
    }

    /// `*` names every resource but no subresource, `*/*` everything, `*/status` the status of
    /// every resource, `pods/*` pods and every subresource of pods (upstream's matcher).
    pub fn matches(&self, a: &Attrs<'_>) -> bool {
        let resource_ok = self.resources.iter().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r.as_str(), ""));
            (res == "*" || res == a.resource) && (sub == "*" || sub == a.subresource)
        });
        let scope_ok = match self.scope.as_str() {
            "Cluster" => a.resource == "namespaces" || !a.namespaced,
            "Namespaced" => a.resource != "namespaces" && a.namespaced,
            _ => true,
        };
        any_of(&self.operations, a.operation)
            && any_of(&self.groups, a.group)
            && any_of(&self.versions, a.version)
            && resource_ok
            && scope_ok
    }
}

/// Where a webhook is reached.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Url(url::Url),
    /// `clientConfig.service`: rdd serves no Service network, so such a webhook cannot be
    /// reached; calls fail (and `failurePolicy` decides) with this explanation.
    Unreachable(String),
}

/// One webhook of a configuration, parsed once when configurations change.
#[derive(Debug, Clone)]
pub struct Hook {
    pub name: String,
    pub configuration: String,
    pub rules: Vec<Rule>,
    /// `matchPolicy: Equivalent` (the v1 default): other served versions of the resource match
    /// too, and the webhook receives the object in the version its rule names.
    pub equivalent: bool,
    pub namespace_selector: Option<Result<LabelSelector, String>>,
    pub object_selector: Option<Result<LabelSelector, String>>,
    /// (name, expression)
    pub match_conditions: Vec<(String, String)>,
    pub fail_closed: bool,
    pub side_effects: String,
    pub timeout: Duration,
    pub endpoint: Endpoint,
    /// Client TLS configuration trusting `caBundle` (or the system roots without one).
    pub tls: Result<Arc<rustls::ClientConfig>, String>,
    pub accepts_v1: bool,
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

/// A Kubernetes LabelSelector; `None` for an absent or empty one (matches everything).
fn parse_selector(v: Option<&Value>) -> Option<Result<LabelSelector, String>> {
    let v = v.filter(|s| s.as_object().is_some_and(|o| !o.is_empty()))?;
    Some(crate::admission::label_selector(v).map_err(|e| e.message.clone()))
}

fn selector_matches(
    sel: &Option<Result<LabelSelector, String>>,
    labels: Option<&serde_json::Map<String, Value>>,
) -> Result<bool, String> {
    match sel {
        None => Ok(true),
        Some(Ok(s)) => Ok(s.matches(labels)),
        Some(Err(e)) => Err(e.clone()),
    }
}

impl Hook {
    pub fn parse(configuration: &str, v: &Value) -> Hook {
        let cc = v.get("clientConfig").cloned().unwrap_or(Value::Null);
        let endpoint = match (
            cc.get("url").and_then(Value::as_str),
            cc.get("service").filter(|s| s.is_object()),
        ) {
            (Some(u), _) => match url::Url::parse(u) {
                Ok(url) if url.scheme() == "https" => Endpoint::Url(url),
                Ok(_) => Endpoint::Unreachable(format!("clientConfig.url {u:?} is not https")),
                Err(e) => Endpoint::Unreachable(format!("clientConfig.url {u:?}: {e}")),
            },
            (None, Some(s)) => Endpoint::Unreachable(format!(
                "clientConfig.service {}/{} cannot be reached: rdd has no Service network, use clientConfig.url",
                s.get("namespace").and_then(Value::as_str).unwrap_or(""),
                s.get("name").and_then(Value::as_str).unwrap_or("")
            )),
            (None, None) => {
                Endpoint::Unreachable("clientConfig has neither url nor service".into())
            }
        };
        let timeout = v
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30);
        Hook {
            name: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            configuration: configuration.to_string(),
            rules: v
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Rule::parse)
                .collect(),
            equivalent: v.get("matchPolicy").and_then(Value::as_str) != Some("Exact"),
            namespace_selector: parse_selector(v.get("namespaceSelector")),
            object_selector: parse_selector(v.get("objectSelector")),
            match_conditions: v
                .get("matchConditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("name"), s("expression"))
                })
                .collect(),
            fail_closed: v.get("failurePolicy").and_then(Value::as_str) != Some("Ignore"),
            side_effects: v
                .get("sideEffects")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_string(),
            timeout: Duration::from_secs(timeout),
            endpoint,
            tls: client_tls(cc.get("caBundle").and_then(Value::as_str).unwrap_or("")),
            accepts_v1: strs(v.get("admissionReviewVersions"))
                .iter()
                .any(|x| x == "v1"),
        }
    }

    /// The served version the request matches in: its own, or (Equivalent) another version
    /// of the same resource that a rule names.
    fn matched_resource(
        &self,
        registry: &Registry,
        req: &Request<'_>,
        attrs: &Attrs<'_>,
    ) -> Option<Arc<Resource>> {
        if self.rules.iter().any(|r| r.matches(attrs)) {
            return Some(
                registry
                    .get(&req.res.group, &req.res.version, &req.res.plural)
                    .unwrap_or_else(|| Arc::new(req.res.clone())),
            );
        }
        if !self.equivalent {
            return None;
        }
        registry
            .all()
            .filter(|r| {
                r.group == req.res.group && r.plural == req.res.plural && r.version != attrs.version
            })
            .find(|r| {
                let a = Attrs {
                    version: &r.version,
                    ..*attrs
                };
                self.rules.iter().any(|rule| rule.matches(&a))
            })
            .cloned()
    }
}

/// Every webhook, in the order upstream calls them: configurations sorted by name.
#[derive(Debug, Default)]
pub struct Hooks {
    pub mutating: Vec<Arc<Hook>>,
    pub validating: Vec<Arc<Hook>>,
}

/// Parse the stored configurations (called after each write of one, and at start).
pub async fn load(state: &State) -> Result<Hooks, ApiError> {
    let mut out = Hooks::default();
    for (plural, mutating) in [
        ("mutatingwebhookconfigurations", true),
        ("validatingwebhookconfigurations", false),
    ] {
        let prefix = crate::registry::storage_prefix("admissionregistration.k8s.io", plural);
        let (rows, _, _) = state.store.list(&prefix, 0, None, 0).await?;
        let mut configs: Vec<Value> = rows.into_iter().map(|r| r.value.as_ref().clone()).collect();
        configs.sort_by(|a, b| crate::meta::name(a).cmp(crate::meta::name(b)));
        for c in &configs {
            let cname = crate::meta::name(c);
            for w in c
                .get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let hook = Arc::new(Hook::parse(cname, w));
                if mutating {
                    out.mutating.push(hook);
                } else {
                    out.validating.push(hook);
                }
            }
        }
    }
    Ok(out)
}

fn attrs<'a>(req: &'a Request<'a>) -> Attrs<'a> {
    Attrs {
        operation: req.operation,
        group: &req.res.group,
        version: &req.res.version,
        resource: &req.res.plural,
        subresource: req.subresource.unwrap_or(""),
        namespaced: req.res.namespaced,
    }
}

fn exempt(req: &Request<'_>) -> bool {
    req.res.group == "admissionregistration.k8s.io" && EXEMPT.contains(&req.res.plural.as_str())
}

/// The labels a namespaceSelector is evaluated against; the stored namespace is read at most
/// once per request.
struct NamespaceLabels {
    stored: Option<Option<serde_json::Map<String, Value>>>,
}

impl NamespaceLabels {
    async fn get(
        &mut self,
        state: &State,
        req: &Request<'_>,
        object: Option<&Value>,
    ) -> Result<Option<serde_json::Map<String, Value>>, ApiError> {
        let is_namespace = req.res.plural == "namespaces" && req.res.group.is_empty();
        if is_namespace && req.subresource.is_none() && req.operation != "DELETE" {
            // A namespace being created or updated is matched with its new labels, as the
            // previous mutating webhooks left them.
            return Ok(object.and_then(crate::meta::labels).cloned());
        }
        if self.stored.is_none() {
            let name = if is_namespace {
                req.name
            } else {
                req.namespace
            };
            let key = crate::registry::storage_prefix("", "namespaces") + "/" + name;
            let labels = match state.store.get(&key).await? {
                Some(row) => crate::meta::labels(&row.value).cloned(),
                None => return Err(ApiError::not_found("", "namespaces", name)),
            };
            self.stored = Some(labels);
        }
        Ok(self.stored.clone().flatten())
    }
}

fn selector_error(hook: &Hook, which: &str, e: String) -> ApiError {
    ApiError::internal(format!("webhook {:?}: invalid {which}: {e}", hook.name))
}

/// Whether `hook` applies to the write; returns the version it sees the object in.
async fn applies(
    state: &State,
    registry: &Registry,
    hook: &Hook,
    req: &Request<'_>,
    object: Option<&Value>,
    ns: &mut NamespaceLabels,
) -> Result<Option<Arc<Resource>>, ApiError> {
    let a = attrs(req);
    let Some(matched) = hook.matched_resource(registry, req, &a) else {
        return Ok(None);
    };
    // Cluster-scoped objects other than namespaces are never exempted by a namespaceSelector.
    let is_namespace = req.res.plural == "namespaces" && req.res.group.is_empty();
    if hook.namespace_selector.is_some() && (req.res.namespaced || is_namespace) {
        let labels = ns.get(state, req, object).await?;
        if !selector_matches(&hook.namespace_selector, labels.as_ref())
            .map_err(|e| selector_error(hook, "namespaceSelector", e))?
        {
            return Ok(None);
        }
    }
    if !object_selected(hook, object, req.old_object)
        .map_err(|e| selector_error(hook, "objectSelector", e))?
    {
        return Ok(None);
    }
    if !hook.match_conditions.is_empty() && !conditions_hold(hook, req, object)? {
        return Ok(None);
    }
    Ok(Some(matched))
}

/// The objectSelector matches the new or the old object; an absent object has no labels to
/// match (upstream: nil never matches), so a DELETE is selected by the old object alone.
fn object_selected(
    hook: &Hook,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, String> {
    if hook.object_selector.is_none() {
        return Ok(true);
    }
    for o in [object, old].into_iter().flatten() {
        if selector_matches(&hook.object_selector, crate::meta::labels(o))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// All matchConditions true → call. An evaluation error fails the request under
/// `failurePolicy: Fail` and skips the webhook under `Ignore`.
fn conditions_hold(
    hook: &Hook,
    req: &Request<'_>,
    object: Option<&Value>,
) -> Result<bool, ApiError> {
    let vars = [
        ("object", object.cloned().unwrap_or(Value::Null)),
        ("oldObject", req.old_object.cloned().unwrap_or(Value::Null)),
        ("request", crate::admission::request_json(req)),
    ];
    let fail = |e: String| {
        ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: webhook {:?}: matchConditions: {e}",
            req.res.group_resource(),
            req.name,
            hook.name
        ))
    };
    let eval = match Eval::new(&vars) {
        Ok(e) => e,
        Err(e) if hook.fail_closed => return Err(fail(e)),
        Err(_) => return Ok(false),
    };
    let mut error = None;
    for (name, expr) in &hook.match_conditions {
        match eval.check(expr) {
            Outcome::True => {}
            // A false condition skips the webhook even when another one errs (as upstream).
            Outcome::False => return Ok(false),
            Outcome::Error(e) => error = error.or(Some(format!("{name}: {e}"))),
        }
    }
    match error {
        Some(e) if hook.fail_closed => Err(fail(e)),
        Some(_) => Ok(false),
        None => Ok(true),
    }
}

/// The AdmissionReview sent to a webhook.
fn review(uid: &str, req: &Request<'_>, matched: &Resource, object: Option<&Value>) -> Value {
    let as_matched = |o: &Value| {
        let mut o = o.clone();
        // `conversion: None` CRDs differ between versions only in apiVersion.
        if matched.version != req.res.version {
            o["apiVersion"] = json!(matched.api_version());
        }
        o
    };
    let is_namespace = req.res.plural == "namespaces" && req.res.group.is_empty();
    // For a Namespace itself upstream reports its name as the request's namespace.
    let namespace = if is_namespace && req.operation != "CREATE" {
        req.name
    } else {
        req.namespace
    };
    let mut r = json!({
        "uid": uid,
        "kind": {"group": matched.group, "version": matched.version, "kind": matched.kind},
        "resource": {"group": matched.group, "version": matched.version, "resource": matched.plural},
        "requestKind": {"group": req.res.group, "version": req.res.version, "kind": req.res.kind},
        "requestResource": {"group": req.res.group, "version": req.res.version, "resource": req.res.plural},
        "operation": req.operation,
        "userInfo": {"username": req.user.username, "groups": req.user.groups},
        "object": object.map(as_matched).unwrap_or(Value::Null),
        "oldObject": req.old_object.map(as_matched).unwrap_or(Value::Null),
        "dryRun": req.dry_run,
        "options": req.options,
    });
    if !req.user.uid.is_empty() {
        r["userInfo"]["uid"] = json!(req.user.uid);
    }
    if let Some(s) = req.subresource {
        r["subResource"] = json!(s);
        r["requestSubResource"] = json!(s);
    }
    if !req.name.is_empty() {
        r["name"] = json!(req.name);
    }
    if !namespace.is_empty() {
        r["namespace"] = json!(namespace);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": r})
}

/// A webhook's answer.
#[derive(Debug, Default)]
pub struct Verdict {
    pub allowed: bool,
    pub status: Option<Value>,
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
}

/// Check and decode an AdmissionReview answer to the request `uid`.
pub fn parse_response(body: &[u8], uid: &str) -> Result<Verdict, CallError> {
    use base64::Engine;
    let bad = |m: String| CallError::Response(m);
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let av = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    if av != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(bad(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {av}, Kind={kind}"
        )));
    }
    let Some(r) = v.get("response").filter(|r| r.is_object()) else {
        return Err(bad("webhook response was absent".into()));
    };
    let got = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(bad(format!("expected response.uid={uid:?}, got {got:?}")));
    }
    let allowed = r.get("allowed").and_then(Value::as_bool).unwrap_or(false);
    let patch = match r
        .get("patch")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => {
            let pt = r.get("patchType").and_then(Value::as_str).unwrap_or("");
            if pt != "JSONPatch" {
                return Err(bad(format!(
                    "webhook returned a patch with unsupported patchType {pt:?}"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| bad(format!("patch is not base64: {e}")))?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| bad(format!("patch is not a JSON patch: {e}")))?,
            )
        }
    };
    Ok(Verdict {
        allowed,
        status: r.get("status").cloned(),
        patch,
        warnings: strs(r.get("warnings")),
    })
}

/// The reasons of `metav1.StatusReason`; any other reason a webhook gives is dropped.
fn known_reason(r: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    KNOWN.iter().find(|k| **k == r).copied().unwrap_or("")
}

/// A denial as upstream reports it: the webhook's Status (code at least 400) with the
/// message prefixed by who denied.
pub fn denied(hook: &str, status: Option<&Value>) -> ApiError {
    let s = status.cloned().unwrap_or(Value::Null);
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let who = format!("admission webhook {hook:?} denied the request");
    let message = match (text("message"), text("reason")) {
        (m, _) if !m.is_empty() => format!("{who}: {m}"),
        (_, r) if !r.is_empty() => format!("{who}: {r}"),
        _ => format!("{who} without explanation"),
    };
    let code = s
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    let mut e = ApiError::new(code, known_reason(&text("reason")), message);
    e.causes = s
        .pointer("/details/causes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let t = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Cause {
                reason: t("reason"),
                message: t("message"),
                field: t("field"),
            }
        })
        .collect();
    e
}

fn call_failed(hook: &Hook, e: &CallError) -> ApiError {
    ApiError::internal(format!("failed calling webhook {:?}: {e}", hook.name))
}

fn native_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// A client configuration trusting the base64 PEM `ca_bundle`, or the system roots when empty.
fn client_tls(ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use base64::Engine;
    let mut roots = rustls::RootCertStore::empty();
    if ca_bundle.is_empty() {
        roots.add_parsable_certificates(native_roots().iter().cloned());
    } else {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_bundle)
            .map_err(|e| format!("clientConfig.caBundle is not base64: {e}"))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("clientConfig.caBundle: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("clientConfig.caBundle: {e}"))?;
        }
        if roots.is_empty() {
            return Err("clientConfig.caBundle holds no PEM certificate".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// POST the review and return the answer's body. One connection per call: webhooks are
/// local and rare enough on a desktop that a handshake per call costs less than a pool's
/// bookkeeping, and a restarted webhook server is picked up at once.
async fn post(hook: &Hook, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
    let url = match &hook.endpoint {
        Endpoint::Url(u) => {
            let mut u = u.clone();
            u.query_pairs_mut()
                .append_pair("timeout", &format!("{}s", hook.timeout.as_secs()));
            u
        }
        Endpoint::Unreachable(why) => return Err(CallError::Call(why.clone())),
    };
    let tls = hook.tls.clone().map_err(CallError::Call)?;
    let fail = |e: String| CallError::Call(format!("Post \"{url}\": {e}"));
    let exchange = async {
        let host = url.host().ok_or_else(|| fail("no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let server_name = match host {
            url::Host::Domain(d) => rustls::pki_types::ServerName::try_from(d.to_string())
                .map_err(|e| fail(e.to_string()))?,
            url::Host::Ipv4(ip) => rustls::pki_types::ServerName::from(std::net::IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => rustls::pki_types::ServerName::from(std::net::IpAddr::V6(ip)),
        };
        let addr = match host {
            url::Host::Domain(d) => format!("{d}:{port}"),
            url::Host::Ipv4(ip) => format!("{ip}:{port}"),
            url::Host::Ipv6(ip) => format!("[{ip}]:{port}"),
        };
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| fail(format!("dial tcp {addr}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|e| fail(format!("tls: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let request = http::Request::post(path)
            .header(http::header::HOST, addr.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(fail(format!(
                "the server responded with the status code {} ({})",
                status.as_u16(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).trim()
            )));
        }
        Ok(bytes.to_vec())
    };
    match tokio::time::timeout(hook.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(fail("context deadline exceeded".into())),
    }
}

/// Call one webhook: the dry-run and version checks, then the review round trip.
async fn call(
    hook: &Hook,
    req: &Request<'_>,
    matched: &Resource,
    object: Option<&Value>,
) -> Result<Result<Verdict, CallError>, ApiError> {
    if req.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
        return Err(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        )));
    }
    if !hook.accepts_v1 {
        return Ok(Err(CallError::Call(
            "webhook does not accept the v1 AdmissionReview (admissionReviewVersions)".into(),
        )));
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let body = serde_json::to_vec(&review(&uid, req, matched, object))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(match post(hook, body).await {
        Ok(b) => parse_response(&b, &uid),
        Err(e) => Err(e),
    })
}

/// Run the matching mutating webhooks in order over `object` (None for DELETE). Returns
/// whether any webhook changed it. `req.object` is not read: `object` is the current one.
pub async fn mutate(
    state: &State,
    req: &Request<'_>,
    mut object: Option<&mut Value>,
    warnings: &mut Vec<String>,
) -> Result<bool, ApiError> {
    let hooks = state.webhooks();
    if hooks.mutating.is_empty() || exempt(req) {
        return Ok(false);
    }
    let registry = state.registry();
    let mut ns = NamespaceLabels { stored: None };
    let mut changed = false;
    for hook in &hooks.mutating {
        let current = object.as_deref();
        let Some(matched) = applies(state, &registry, hook, req, current, &mut ns).await? else {
            continue;
        };
        let verdict = match call(hook, req, &matched, current).await? {
            Ok(v) => v,
            Err(e) if hook.fail_closed => return Err(call_failed(hook, &e)),
            Err(e) => {
                tracing::warn!(webhook = %hook.name, error = %e, "webhook failed, ignored (failurePolicy Ignore)");
                continue;
            }
        };
        warnings.extend(verdict.warnings);
        if !verdict.allowed {
            return Err(denied(&hook.name, verdict.status.as_ref()));
        }
        let Some(patch) = verdict.patch.filter(|p| !p.0.is_empty()) else {
            continue;
        };
        let Some(obj) = object.as_deref_mut() else {
            return Err(ApiError::internal(format!(
                "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                hook.name
            )));
        };
        let mut doc = obj.clone();
        if matched.version != req.res.version {
            doc["apiVersion"] = json!(matched.api_version());
        }
        json_patch::patch(&mut doc, &patch).map_err(|e| {
            ApiError::internal(format!(
                "admission webhook {:?} returned a patch that does not apply: {e}",
                hook.name
            ))
        })?;
        if !doc.is_object() {
            return Err(ApiError::internal(format!(
                "admission webhook {:?} patched the object into a non-object",
                hook.name
            )));
        }
        // Back to the request's version and kind, whatever the webhook did to them.
        doc["apiVersion"] = json!(req.res.api_version());
        doc["kind"] = json!(req.res.kind);
        if doc != *obj {
            *obj = doc;
            changed = true;
        }
    }
    Ok(changed)
}

/// Call the matching validating webhooks concurrently; the first denial or failure (in
/// configuration order) fails the write.
pub async fn validate(
    state: &State,
    req: &Request<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let hooks = state.webhooks();
    if hooks.validating.is_empty() || exempt(req) {
        return Ok(());
    }
    let registry = state.registry();
    let mut ns = NamespaceLabels { stored: None };
    let mut matched = Vec::new();
    for hook in &hooks.validating {
        if let Some(res) = applies(state, &registry, hook, req, req.object, &mut ns).await? {
            matched.push((hook.clone(), res));
        }
    }
    let results = futures::future::join_all(
        matched
            .iter()
            .map(|(hook, res)| call(hook, req, res, req.object)),
    )
    .await;
    let mut first_error = None;
    for ((hook, _), result) in matched.iter().zip(results) {
        let error = match result {
            Err(e) => Some(e),
            Ok(Err(e)) if hook.fail_closed => Some(call_failed(hook, &e)),
            Ok(Err(e)) => {
                tracing::warn!(webhook = %hook.name, error = %e, "webhook failed, ignored (failurePolicy Ignore)");
                None
            }
            Ok(Ok(v)) => {
                warnings.extend(v.warnings);
                (!v.allowed).then(|| denied(&hook.name, v.status.as_ref()))
            }
        };
        if first_error.is_none() {
            first_error = error;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> Rule {
        Rule::parse(&v)
    }

    fn a<'a>(op: &'a str, res: &'a str, sub: &'a str, namespaced: bool) -> Attrs<'a> {
        Attrs {
            operation: op,
            group: "",
            version: "v1",
            resource: res,
            subresource: sub,
            namespaced,
        }
    }

    #[test]
    fn resources_wildcards_and_subresources() {
        let r = |res: &str| {
            rule(
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [res]}),
            )
        };
        let cm = a("CREATE", "configmaps", "", true);
        let status = a("UPDATE", "configmaps", "status", true);
        assert!(r("*").matches(&cm));
        assert!(!r("*").matches(&status), "* names no subresource");
        assert!(r("*/*").matches(&status) && r("*/*").matches(&cm));
        assert!(r("*/status").matches(&status) && !r("*/status").matches(&cm));
        // As upstream's matcher: a `*` subresource also matches the resource itself.
        assert!(r("configmaps/*").matches(&status) && r("configmaps/*").matches(&cm));
        assert!(!r("secrets/*").matches(&status));
        assert!(r("configmaps/status").matches(&status));
        assert!(r("configmaps").matches(&cm) && !r("secrets").matches(&cm));
    }

    #[test]
    fn operations_groups_versions_and_scope() {
        let r = rule(
            json!({"operations": ["CREATE", "DELETE"], "apiGroups": ["apps"], "apiVersions": ["*"], "resources": ["*"]}),
        );
        let mut x = a("DELETE", "deployments", "", true);
        x.group = "apps";
        assert!(r.matches(&x));
        x.operation = "UPDATE";
        assert!(!r.matches(&x));
        x.operation = "CREATE";
        x.group = "";
        assert!(!r.matches(&x));
        let scoped = |scope: &str| {
            rule(
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": scope}),
            )
        };
        let ns_obj = a("CREATE", "namespaces", "", false);
        let cm = a("CREATE", "configmaps", "", true);
        let crd = a("CREATE", "customresourcedefinitions", "", false);
        assert!(scoped("Cluster").matches(&ns_obj) && scoped("Cluster").matches(&crd));
        assert!(!scoped("Cluster").matches(&cm));
        assert!(scoped("Namespaced").matches(&cm));
        assert!(!scoped("Namespaced").matches(&ns_obj) && !scoped("Namespaced").matches(&crd));
        assert!(scoped("*").matches(&ns_obj) && scoped("*").matches(&cm));
    }

    #[test]
    fn hook_defaults_and_limits() {
        let h = Hook::parse(
            "c",
            &json!({"name": "w.example.com", "clientConfig": {"url": "https://127.0.0.1:9/x"},
                "admissionReviewVersions": ["v1"], "sideEffects": "None", "timeoutSeconds": 90}),
        );
        assert!(h.fail_closed, "failurePolicy defaults to Fail");
        assert!(h.equivalent, "matchPolicy defaults to Equivalent");
        assert_eq!(h.timeout, Duration::from_secs(30), "timeout capped at 30 s");
        assert!(h.accepts_v1);
        assert!(matches!(h.endpoint, Endpoint::Url(_)));
        assert!(h.tls.is_ok(), "system roots without a caBundle");
        let h = Hook::parse(
            "c",
            &json!({"name": "s", "failurePolicy": "Ignore", "matchPolicy": "Exact",
                "clientConfig": {"service": {"namespace": "ns", "name": "svc"}, "caBundle": "!!"},
                "admissionReviewVersions": ["v1beta1"]}),
        );
        assert!(!h.fail_closed && !h.equivalent && !h.accepts_v1);
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert!(matches!(&h.endpoint, Endpoint::Unreachable(m) if m.contains("ns/svc")));
        assert!(h.tls.is_err());
        let h = Hook::parse("c", &json!({"clientConfig": {"url": "http://x/"}}));
        assert!(matches!(&h.endpoint, Endpoint::Unreachable(m) if m.contains("not https")));
    }

    #[test]
    fn responses_are_checked() {
        use base64::Engine;
        let ok = |r: Value| {
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})).unwrap()
        };
        let v = parse_response(
            &ok(json!({"uid": "u", "allowed": true, "warnings": ["w"]})),
            "u",
        )
        .unwrap();
        assert!(v.allowed && v.patch.is_none());
        assert_eq!(v.warnings, vec!["w".to_string()]);
        assert!(matches!(
            parse_response(&ok(json!({"uid": "other", "allowed": true})), "u"),
            Err(CallError::Response(m)) if m.contains("expected response.uid")
        ));
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/a","value":1}]"#);
        let v = parse_response(
            &ok(json!({"uid": "u", "allowed": true, "patchType": "JSONPatch", "patch": patch})),
            "u",
        )
        .unwrap();
        assert_eq!(v.patch.unwrap().0.len(), 1);
        assert!(
            parse_response(
                &ok(json!({"uid": "u", "allowed": true, "patch": patch})),
                "u"
            )
            .is_err()
        );
        assert!(parse_response(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"uid":"u"}}"#, "u").is_err());
        assert!(parse_response(b"nope", "u").is_err());
    }

    fn builtin(plural: &str) -> Resource {
        crate::builtin::resources(&crate::builtin::schemas())
            .into_iter()
            .find(|r| r.plural == plural)
            .unwrap()
    }

    fn user() -> crate::auth::UserInfo {
        crate::auth::UserInfo {
            username: "u".into(),
            uid: String::new(),
            groups: vec![],
        }
    }

    fn request<'a>(
        res: &'a Resource,
        op: &'a str,
        object: Option<&'a Value>,
        old: Option<&'a Value>,
        user: &'a crate::auth::UserInfo,
    ) -> Request<'a> {
        Request {
            operation: op,
            res,
            subresource: None,
            namespace: "ns",
            name: "x",
            object,
            old_object: old,
            user,
            dry_run: false,
            options: &Value::Null,
        }
    }

    #[test]
    fn equivalent_versions_match_in_the_rules_version() {
        let v1 = builtin("configmaps");
        let mut v2 = v1.clone();
        v2.version = "v2".into();
        v2.storage_version = false;
        let registry = Registry::new(vec![v1.clone(), v2.clone()], 1);
        let hook = |policy: &str| {
            Hook::parse(
                "c",
                &json!({"name": "h", "matchPolicy": policy, "rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]}),
            )
        };
        let u = user();
        let req = request(&v2, "CREATE", None, None, &u);
        let a = attrs(&req);
        let m = hook("Equivalent")
            .matched_resource(&registry, &req, &a)
            .unwrap();
        assert_eq!(m.version, "v1", "sent in the rule's version");
        assert!(
            hook("Exact")
                .matched_resource(&registry, &req, &a)
                .is_none()
        );
        let obj = json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}});
        let r = review(
            "u1",
            &request(&v2, "CREATE", Some(&obj), None, &u),
            &m,
            Some(&obj),
        );
        assert_eq!(r["request"]["kind"]["version"], "v1");
        assert_eq!(r["request"]["requestKind"]["version"], "v2");
        assert_eq!(r["request"]["object"]["apiVersion"], "v1");
        assert_eq!(r["request"]["namespace"], "ns");
        assert!(r["request"]["oldObject"].is_null());
    }

    #[test]
    fn object_selector_sees_new_or_old_labels() {
        let hook = Hook::parse(
            "c",
            &json!({"objectSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}}),
        );
        let with = json!({"metadata": {"labels": {"a": "1"}}});
        let without = json!({"metadata": {}});
        assert_eq!(object_selected(&hook, Some(&with), None), Ok(true));
        assert_eq!(object_selected(&hook, Some(&without), None), Ok(false));
        assert_eq!(
            object_selected(&hook, Some(&without), Some(&with)),
            Ok(true),
            "label removed"
        );
        assert_eq!(
            object_selected(&hook, None, Some(&with)),
            Ok(true),
            "DELETE"
        );
        assert_eq!(object_selected(&hook, None, None), Ok(false));
        let none = Hook::parse("c", &json!({"objectSelector": {}}));
        assert_eq!(
            object_selected(&none, None, None),
            Ok(true),
            "empty selects all"
        );
        let absent = Hook::parse(
            "c",
            &json!({"objectSelector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}}),
        );
        assert_eq!(object_selected(&absent, Some(&without), None), Ok(true));
        let bad = Hook::parse(
            "c",
            &json!({"objectSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
        );
        assert!(object_selected(&bad, Some(&with), None).is_err());
    }

    #[test]
    fn match_conditions_and_failure_policy() {
        let cm = builtin("configmaps");
        let u = user();
        let obj = json!({"metadata": {"name": "x", "labels": {"skip": "yes"}}});
        let req = request(&cm, "CREATE", Some(&obj), None, &u);
        let hook = |expr: &str, policy: &str| {
            Hook::parse(
                "c",
                &json!({"name": "h", "failurePolicy": policy, "matchConditions": [
                    {"name": "op", "expression": "request.operation == 'CREATE'"},
                    {"name": "c", "expression": expr}]}),
            )
        };
        let holds = |h: &Hook| conditions_hold(h, &req, req.object);
        assert!(holds(&hook("!('skip' in object.metadata.labels)", "Fail")).is_ok_and(|b| !b));
        assert!(holds(&hook("object.metadata.name == 'x'", "Fail")).is_ok_and(|b| b));
        let err = holds(&hook("object.nope.deeper", "Fail")).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(err.message.contains("matchConditions"), "{}", err.message);
        assert!(holds(&hook("object.nope.deeper", "Ignore")).is_ok_and(|b| !b));
    }

    #[test]
    fn exempt_kinds() {
        let u = user();
        for plural in [
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
            "validatingadmissionpolicies",
        ] {
            let r = builtin(plural);
            assert!(exempt(&request(&r, "CREATE", None, None, &u)), "{plural}");
        }
        let r = builtin("configmaps");
        assert!(!exempt(&request(&r, "CREATE", None, None, &u)));
    }

    #[test]
    fn denials_read_like_upstream() {
        let e = denied(
            "w.example.com",
            Some(&json!({"message": "no way", "code": 403, "reason": "Forbidden"})),
        );
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "admission webhook \"w.example.com\" denied the request: no way"
        );
        let e = denied("w", None);
        assert_eq!(e.code, 400, "a rejection is never below 400");
        assert_eq!(
            e.message,
            "admission webhook \"w\" denied the request without explanation"
        );
        let e = denied("w", Some(&json!({"reason": "Custom", "code": 200})));
        assert_eq!((e.code, e.reason), (400, ""));
        assert!(e.message.ends_with("denied the request: Custom"));
    }
}
