//! The write pipeline shared by create, update, patch and delete:
//! decode → patch → subresource reset → prune/defaults → mutating webhooks (then prune and
//! defaults again) → validation → managedFields → admission (namespace lifecycle,
//! ValidatingAdmissionPolicy, validating webhooks) → compare-and-swap in storage.
//! Deletes run mutating webhooks, policies and validating webhooks with `oldObject` only.

use std::sync::Arc;

use http::Response;
use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::handlers::{Target, present, present_view, render_one, to_storage, to_view};
use crate::meta::{self, meta_mut, meta_str};
use crate::registry::{Flavor, Resource};
use crate::request::{Body, Ctx, Wants, decode_body, json_response, negotiate};
use crate::server::State;
use crate::storage::{StoreError, WriteOp};
use crate::{crd, validation};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

pub struct Opts {
    pub user: crate::auth::UserInfo,
    pub dry_run: bool,
    pub manager: String,
    pub validation: FieldValidation,
    /// The request's CreateOptions, UpdateOptions or PatchOptions, as webhooks receive them.
    pub options: Value,
}

/// `kind` names the options object webhooks see (`CreateOptions`, `UpdateOptions`,
/// `PatchOptions`).
fn opts(ctx: &Ctx, apply: bool, kind: &str) -> Result<Opts, ApiError> {
    let dry = ctx.query.all("dryRun");
    if let Some(bad) = dry.iter().find(|d| **d != "All") {
        return Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: \"{bad}\": supported values: \"All\""
        )));
    }
    let manager = match ctx.query.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ if apply => {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
            ));
        }
        _ => ctx.user_agent_manager(),
    };
    if manager.chars().count() > 128 || manager.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "fieldManager: Invalid value: must be at most 128 printable characters",
        ));
    }
    let validation = match ctx.query.get("fieldValidation").unwrap_or("") {
        "" | "Warn" => FieldValidation::Warn,
        "Strict" => FieldValidation::Strict,
        "Ignore" => FieldValidation::Ignore,
        other => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    };
    let mut options = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if !dry.is_empty() {
        options["dryRun"] = json!(dry);
    }
    for f in ["fieldManager", "fieldValidation"] {
        if let Some(v) = ctx.query.get(f).filter(|v| !v.is_empty()) {
            options[f] = json!(v);
        }
    }
    if apply && ctx.query.get("force").is_some() {
        options["force"] = json!(ctx.query.flag("force")?);
    }
    Ok(Opts {
        user: ctx.user.clone(),
        dry_run: !dry.is_empty(),
        manager,
        validation,
        options,
    })
}

fn scope(res: &Resource, sub: Option<&str>) -> rdd_ssa::Scope {
    match sub {
        Some("status") => rdd_ssa::Scope::OnlyStatus,
        _ if res.has_status() => rdd_ssa::Scope::ExcludeStatus,
        _ => rdd_ssa::Scope::All,
    }
}

/// Check the body's identity against the URL; fill what is missing.
fn check_identity(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let res = &t.res;
    let av = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({av})"
            )));
        }
        _ => obj["apiVersion"] = json!(av),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != res.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )));
        }
        _ => obj["kind"] = json!(res.kind),
    }
    let m = meta_mut(obj);
    if res.namespaced {
        match m.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != t.namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                m.insert("namespace".into(), json!(t.namespace));
            }
        }
    } else {
        m.remove("namespace");
    }
    if let Some(name) = &t.name {
        match m.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                m.insert("name".into(), json!(name));
            }
        }
    }
    Ok(())
}

/// Prune unknown fields and report them per `fieldValidation`.
fn prune(
    t: &Target,
    obj: &mut Value,
    o: &Opts,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let Some(schema) = &t.res.compiled else {
        return Ok(());
    };
    let pruned = schema.prune(obj);
    if pruned.is_empty() || o.validation == FieldValidation::Ignore {
        return Ok(());
    }
    let msgs: Vec<String> = pruned
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    if o.validation == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    warnings.extend(msgs);
    Ok(())
}

fn invalid(res: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&res.group, &res.kind, name, causes)
}

/// Everything outside metadata (and status, when status is a subresource) — what `generation`
/// counts changes of.
fn spec_part(res: &Resource, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if res.has_status() {
            m.remove("status");
        }
    }
    o
}

async fn namespace_admission(state: &Arc<State>, t: &Target, name: &str) -> Result<(), ApiError> {
    if !t.res.namespaced {
        return Ok(());
    }
    match state.namespace_state(&t.namespace).await? {
        None => Err(ApiError::not_found("", "namespaces", &t.namespace)),
        Some(true) => {
            let mut e = ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                t.res.group_resource(),
                t.namespace
            ));
            e.causes = vec![Cause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {} is being terminated", t.namespace),
                field: "metadata.namespace".into(),
            }];
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

fn apply_defaults(res: &Resource, obj: &mut Value) {
    if res.structural
        && let Some(s) = &res.compiled
    {
        s.apply_defaults(obj);
    }
}

/// The write as admission sees it: CREATE, or UPDATE of `old` as clients read it (with its
/// resourceVersion).
enum Admit<'a> {
    Create,
    Update(&'a Value),
}

/// Normalize, default, run mutating webhooks over, and validate a candidate object; returns it
/// ready to store (no RV). `old` is the stored object of an update.
async fn finish(
    state: &Arc<State>,
    t: &Target,
    mut obj: Value,
    old: Option<&Value>,
    o: &Opts,
    warnings: &mut Vec<String>,
    admit: Admit<'_>,
) -> Result<Value, ApiError> {
    let res = &t.res;
    prune(t, &mut obj, o, warnings)?;
    apply_defaults(res, &mut obj);
    validation::prepare(res, &mut obj, old)?;
    let name = meta::name(&obj).to_string();
    let sub = t.sub.as_deref();
    // A status write may only change status, whatever a webhook patches. (Copied only when
    // some webhook could patch: controllers write status often.)
    let before =
        (sub == Some("status") && !state.webhooks().mutating.is_empty()).then(|| obj.clone());
    let req = crate::admission::Request {
        operation: match admit {
            Admit::Create => "CREATE",
            Admit::Update(_) => "UPDATE",
        },
        res,
        subresource: sub,
        namespace: &t.namespace,
        name: &name,
        object: None,
        old_object: match admit {
            Admit::Create => None,
            Admit::Update(o) => Some(o),
        },
        user: &o.user,
        dry_run: o.dry_run,
        options: &o.options,
    };
    if crate::webhook::mutate(state, &req, Some(&mut obj), warnings).await? {
        // What webhooks add is pruned (silently, as upstream) and defaulted, so validation
        // below sees the object as it will be stored.
        if let Some(s) = &res.compiled {
            s.prune(&mut obj);
        }
        apply_defaults(res, &mut obj);
        validation::prepare(res, &mut obj, old)?;
        if let Some(mut b) = before {
            match obj.get("status") {
                Some(st) => b["status"] = st.clone(),
                None => {
                    if let Some(m) = b.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            obj = b;
        }
    }
    let mut causes = validation::validate_meta(res, &obj, old);
    if res.structural
        && let Some(s) = &res.compiled
    {
        for e in s.validate(&obj) {
            causes.push(Cause {
                reason: e.reason.to_string(),
                message: e.body(),
                field: e.field.clone(),
            });
        }
    }
    if let Some(cel) = &res.cel {
        causes.extend(cel_causes(cel, &obj, old));
    }
    causes.extend(validation::validate_kind(state, res, &obj, old));
    if !causes.is_empty() {
        return Err(invalid(res, &name, causes));
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    Ok(obj)
}

/// Evaluate a CRD's `x-kubernetes-validations` rules (transition rules see `old`).
fn cel_causes(cel: &crate::cel_rules::CelRules, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    cel.validate(obj, old)
        .into_iter()
        .map(|e| {
            let reason = e.reason.unwrap_or_else(|| "FieldValueInvalid".into());
            // Worded as upstream's field errors of the rule's reason.
            let message = match reason.as_str() {
                "FieldValueForbidden" => format!("Forbidden: {}", e.message),
                "FieldValueRequired" => format!("Required value: {}", e.message),
                "FieldValueDuplicate" => format!("Duplicate value: {}", e.message),
                _ => format!("Invalid value: {}", e.message),
            };
            Cause {
                reason,
                message,
                // A root-level rule has no field; upstream prints its nil path as "<nil>".
                field: if e.field.is_empty() {
                    "<nil>".into()
                } else {
                    e.field
                },
            }
        })
        .collect()
}

fn stored_managed(obj: &Value) -> Vec<rdd_ssa::ManagedFieldsEntry> {
    meta::meta(obj)
        .and_then(|m| m.get("managedFields"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn set_managed(obj: &mut Value, managed: Vec<rdd_ssa::ManagedFieldsEntry>) {
    let m = meta_mut(obj);
    if managed.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert(
            "managedFields".into(),
            serde_json::to_value(managed).unwrap_or(Value::Null),
        );
    }
}

fn without_managed(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

pub async fn create(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    if let Some(r) = crate::reviews::answer(state, t, ctx)? {
        return Ok(r);
    }
    let o = opts(ctx, false, "CreateOptions")?;
    let mut obj = decode_body(ctx)?;
    check_identity(t, &mut obj)?;
    if meta_str(&obj, "resourceVersion").is_some() {
        return Err(ApiError::bad_request(
            "resourceVersion: Invalid value: resourceVersion should not be set on objects to be created",
        ));
    }
    let mut warnings = Vec::new();
    let name = match meta_str(&obj, "name") {
        Some(n) => n.to_string(),
        None => match meta_str(&obj, "generateName") {
            Some(g) => {
                let base: String = g.chars().take(58).collect();
                let n = format!("{base}{}", meta::random_suffix());
                meta_mut(&mut obj).insert("name".into(), json!(n));
                n
            }
            None => {
                return Err(invalid(
                    &t.res,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired".into(),
                        message: "name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
        },
    };
    let out = create_object(state, t, obj, &o, &mut warnings, &name, None).await?;
    ctx.warnings.extend(warnings);
    let wants = negotiate(&ctx.headers, false, true)?;
    let mut r = render_one(
        &t.res,
        ctx,
        if wants == Wants::Table {
            Wants::Json
        } else {
            wants
        },
        out,
    )?;
    *r.status_mut() = http::StatusCode::CREATED;
    Ok(r)
}

/// Create (also used by apply and create-on-update). `managed` overrides the Update entry.
async fn create_object(
    state: &Arc<State>,
    t: &Target,
    mut obj: Value,
    o: &Opts,
    warnings: &mut Vec<String>,
    name: &str,
    managed: Option<Vec<rdd_ssa::ManagedFieldsEntry>>,
) -> Result<Value, ApiError> {
    let res = &t.res;
    let t = &Target {
        name: Some(name.to_string()),
        ..t.clone()
    };
    if res.has_status()
        && res.structural
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    {
        let m = meta_mut(&mut obj);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
    let mut obj = finish(state, t, obj, None, o, warnings, Admit::Create).await?;
    let now = meta::now();
    {
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        if res.tracks_generation {
            m.insert("generation".into(), json!(1));
        }
    }
    let managed = match managed {
        Some(m) => m,
        None => rdd_ssa::update(
            None,
            &without_managed(&obj),
            &[],
            &o.manager,
            &res.api_version(),
            None,
            scope(res, None),
            res.schema.as_deref(),
            &now,
        ),
    };
    set_managed(&mut obj, managed);
    namespace_admission(state, t, name).await?;
    validating_admission(
        state,
        &crate::admission::Request {
            operation: "CREATE",
            res,
            subresource: None,
            namespace: &t.namespace,
            name,
            object: Some(&obj),
            old_object: None,
            user: &o.user,
            dry_run: o.dry_run,
            options: &o.options,
        },
        warnings,
    )
    .await?;
    if res.flavor == Flavor::Crd {
        crd::on_create(state, &mut obj)?;
    }
    if o.dry_run {
        // A dry run answers what the real create would: an existing name is a conflict.
        if state
            .store
            .get(&res.key(&t.namespace, name))
            .await?
            .is_some()
        {
            return Err(ApiError::already_exists(&res.group, &res.plural, name));
        }
        return Ok(present_view(res, &obj, 0));
    }
    let lease = (res.flavor == Flavor::CoreEvent || res.flavor == Flavor::EventsV1)
        .then(|| chrono::Utc::now().timestamp() + 3600);
    // The object moves into storage; only the Events view needs a converted copy.
    let stored = if res.flavor == Flavor::EventsV1 {
        to_storage(res, &obj)
    } else {
        obj
    };
    let ev = match state
        .store
        .write(WriteOp::Create {
            key: res.key(&t.namespace, name),
            value: stored,
            lease_expires: lease,
        })
        .await
    {
        Ok(ev) => ev,
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::already_exists(&res.group, &res.plural, name));
        }
        Err(e) => return Err(e.into()),
    };
    after_commit(state, res, &ev).await;
    Ok(present(res, &ev.object, ev.rev))
}

/// Validating admission after validation: ValidatingAdmissionPolicy, then validating webhooks
/// (upstream's plugin order).
async fn validating_admission(
    state: &Arc<State>,
    req: &crate::admission::Request<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    crate::admission::admit(state, req, warnings).await?;
    crate::webhook::validate(state, req, warnings).await
}

/// Keep in-memory views of storage in step with a committed write, before the client hears of it.
async fn after_commit(state: &Arc<State>, res: &Resource, ev: &crate::storage::Event) {
    if res.flavor == Flavor::Namespace {
        state.note_namespace(ev);
    }
    if crate::authz::index::is_rbac_key(&ev.key) {
        let obj = (ev.kind != crate::storage::EventType::Deleted).then(|| ev.object.clone());
        state.authz.index.apply([(ev.key.clone(), ev.rev, obj)]);
        if ev.key.starts_with(&crate::registry::storage_prefix(
            crate::authz::index::GROUP,
            "clusterroles",
        )) {
            state.authz.aggregation.notify_one();
        }
    }
    if matches!(res.flavor, Flavor::Policy | Flavor::PolicyBinding)
        && let Err(e) = state.reload_policies().await
    {
        tracing::warn!(error = %e, "reloading admission policies");
    }
    if res.flavor == Flavor::WebhookConfig
        && let Err(e) = state.reload_webhooks().await
    {
        tracing::warn!(error = %e, "reloading admission webhooks");
    }
    if res.flavor == Flavor::Crd
        && let Err(e) = state.reload_crds().await
    {
        tracing::warn!(error = %e, "reloading CRDs");
    }
}

/// How a write computes the new object from the stored one.
enum Change {
    /// PUT body; `precondition` = the body's resourceVersion, when given.
    Replace(Value),
    Patch {
        kind: PatchKind,
        body: Value,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply { force: bool },
}

pub async fn update(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    let o = opts(ctx, false, "UpdateOptions")?;
    let mut body = decode_body(ctx)?;
    check_identity(t, &mut body)?;
    let out = modify(state, ctx, t, &o, Change::Replace(body)).await?;
    respond(ctx, t, out)
}

fn respond(
    ctx: &Ctx,
    t: &Target,
    (obj, created): (Value, bool),
) -> Result<Response<Body>, ApiError> {
    let wants = negotiate(&ctx.headers, false, true)?;
    let mut r = render_one(
        &t.res,
        ctx,
        if wants == Wants::Table {
            Wants::Json
        } else {
            wants
        },
        obj,
    )?;
    if created {
        *r.status_mut() = http::StatusCode::CREATED;
    }
    Ok(r)
}

pub async fn patch(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    let ct = ctx.content_type();
    let kind = match ct.as_str() {
        "application/json-patch+json" => PatchKind::Json,
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" if !t.res.structural => PatchKind::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" if ct.ends_with("yaml") => {
            PatchKind::Apply {
                force: ctx.query.flag("force")?,
            }
        }
        _ => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                if t.res.structural {
                    ""
                } else {
                    ", application/strategic-merge-patch+json"
                }
            )));
        }
    };
    if ctx.query.get("force").is_some() && !matches!(kind, PatchKind::Apply { .. }) {
        return Err(ApiError::bad_request(
            "force: Invalid value: may not be specified for non-apply patch",
        ));
    }
    let o = opts(ctx, matches!(kind, PatchKind::Apply { .. }), "PatchOptions")?;
    let body = match kind {
        PatchKind::Apply { .. } => crate::request::yaml_to_json(
            std::str::from_utf8(&ctx.body)
                .map_err(|_| ApiError::bad_request("apply body is not valid UTF-8"))?,
        )?,
        _ => serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    let out = modify(state, ctx, t, &o, Change::Patch { kind, body }).await?;
    respond(ctx, t, out)
}

fn apply_patch(
    res: &Resource,
    kind: PatchKind,
    current: &Value,
    body: &Value,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_value(body.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            let mut doc = current.clone();
            for op in p.0 {
                // As upstream (evanphx/json-patch): `test` for null passes when the path is
                // absent. kube-rs' finalizer helper relies on it for objects without finalizers.
                if let json_patch::PatchOperation::Test(t) = &op
                    && t.value.is_null()
                    && doc.pointer(t.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, &[op]).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
            Ok(doc)
        }
        PatchKind::Merge => {
            if !body.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, body);
            Ok(doc)
        }
        PatchKind::Strategic => {
            rdd_strategic_merge::strategic_merge_patch(current, body, res.schema.as_deref())
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
        PatchKind::Apply { .. } => Ok(current.clone()),
    }
}

const KUBECTL_MANAGER: &str = "kubectl";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn last_applied(obj: &Value) -> Option<Value> {
    let text = meta::meta(obj)?
        .get("annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// Moving from client-side to server-side `kubectl apply`: conflicts that only involve fields
/// of the last client-side applied configuration are not real conflicts (the same user wrote
/// them), so kubectl's apply takes them over, as kube-apiserver does.
fn conflicts_from_last_applied(
    res: &Resource,
    live: &Value,
    conflicts: &[rdd_ssa::Conflict],
) -> bool {
    let Some(la) = last_applied(live) else {
        return false;
    };
    let allowed: std::collections::HashSet<String> = rdd_ssa::fields_of(&la, res.schema.as_deref())
        .paths()
        .into_iter()
        .collect();
    conflicts.iter().all(|c| allowed.contains(&c.field))
}

/// After a server-side apply by kubectl, keep the client-side annotation in step so a later
/// client-side apply computes its patch from what was really applied last.
fn sync_last_applied(manager: &str, live: &Value, applied: &Value, object: &mut Value) {
    if manager != KUBECTL_MANAGER || last_applied(live).is_none() {
        return;
    }
    let mut cfg = applied.clone();
    if let Some(a) = cfg
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
        if a.is_empty()
            && let Some(m) = cfg.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            m.remove("annotations");
        }
    }
    let text = serde_json::to_string(&cfg).unwrap_or_default();
    let m = meta_mut(object);
    let ann = m.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = ann.as_object_mut() {
        a.insert(LAST_APPLIED.into(), json!(text + "\n"));
    }
}

fn ssa_error(res: &Resource, name: &str, e: rdd_ssa::SsaError) -> ApiError {
    match e {
        rdd_ssa::SsaError::Conflicts(cs) => {
            let causes = cs
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.describe_manager(),
                    field: c.field.clone(),
                })
                .collect();
            let mut err = ApiError::conflict(&res.group, &res.plural, name, "");
            err.message = rdd_ssa::SsaError::Conflicts(cs).to_string();
            err.causes = causes;
            err
        }
        other => ApiError::invalid(
            &res.group,
            &res.kind,
            name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: other.to_string(),
                field: String::new(),
            }],
        ),
    }
}

/// Update, patch or apply with internal retry on lost compare-and-swap races. Returns the
/// presented object and whether it was created.
async fn modify(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: &Target,
    o: &Opts,
    change: Change,
) -> Result<(Value, bool), ApiError> {
    let res = t.res.clone();
    let name = t.name.clone().unwrap_or_default();
    let key = res.key(&t.namespace, &name);
    let sub = t.sub.as_deref();
    let mut warnings = Vec::new();
    for _attempt in 0..16 {
        warnings.clear();
        let row = state.store.get(&key).await?;
        let Some(row) = row else {
            // Apply creates; so does PUT for kinds that allow it (Lease).
            let body = match &change {
                Change::Patch {
                    kind: PatchKind::Apply { .. },
                    body,
                } => Some(body.clone()),
                Change::Replace(b) if res.flavor == Flavor::Lease => Some(b.clone()),
                _ => None,
            };
            let Some(mut body) = body else {
                return Err(ApiError::not_found(&res.group, &res.plural, &name));
            };
            if sub.is_some() {
                return Err(ApiError::not_found(&res.group, &res.plural, &name));
            }
            check_identity(t, &mut body)?;
            let managed = if let Change::Patch {
                kind: PatchKind::Apply { force },
                ..
            } = &change
            {
                let now = meta::now();
                if meta::meta(&body).is_some_and(|m| m.contains_key("managedFields")) {
                    return Err(ApiError::bad_request("metadata.managedFields must be nil"));
                }
                let out = rdd_ssa::apply(
                    None,
                    &body,
                    &[],
                    &o.manager,
                    &res.api_version(),
                    None,
                    scope(&res, None),
                    *force,
                    res.schema.as_deref(),
                    &now,
                )
                .map_err(|e| ssa_error(&res, &name, e))?;
                body = out.object;
                Some(out.managed_fields)
            } else {
                if meta_str(&body, "resourceVersion").is_some() {
                    meta_mut(&mut body).remove("resourceVersion");
                }
                None
            };
            match create_object(state, t, body, o, &mut warnings, &name, managed).await {
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
                Ok(obj) => {
                    ctx.warnings.extend(warnings);
                    return Ok((obj, true));
                }
            }
        };
        let stored = to_view(&res, &row.value);
        let current = present(&res, &stored, row.rev);
        let old_managed = stored_managed(&stored);
        let now = meta::now();
        // The candidate object and its managed fields.
        let (mut candidate, precondition, managed) = match &change {
            Change::Replace(body) => {
                let pre = meta_str(body, "resourceVersion").map(str::to_string);
                (body.clone(), pre, None)
            }
            Change::Patch {
                kind: PatchKind::Apply { force },
                body,
            } => {
                let mut body = body.clone();
                check_identity(t, &mut body)?;
                if meta::meta(&body).is_some_and(|m| m.contains_key("managedFields")) {
                    return Err(ApiError::bad_request("metadata.managedFields must be nil"));
                }
                let pre = meta_str(&body, "resourceVersion").map(str::to_string);
                let live = without_managed(&current);
                let run = |force: bool| {
                    rdd_ssa::apply(
                        Some(&live),
                        &body,
                        &old_managed,
                        &o.manager,
                        &res.api_version(),
                        sub,
                        scope(&res, sub),
                        force,
                        res.schema.as_deref(),
                        &now,
                    )
                };
                let out = match run(*force) {
                    Err(rdd_ssa::SsaError::Conflicts(cs))
                        if o.manager == KUBECTL_MANAGER
                            && conflicts_from_last_applied(&res, &live, &cs) =>
                    {
                        run(true)
                    }
                    other => other,
                }
                .map_err(|e| ssa_error(&res, &name, e))?;
                let mut object = out.object;
                sync_last_applied(&o.manager, &live, &body, &mut object);
                (object, pre, Some(out.managed_fields))
            }
            Change::Patch { kind, body } => {
                let patched = apply_patch(&res, *kind, &current, body)?;
                let pre = meta_str(&patched, "resourceVersion")
                    .filter(|rv| Some(*rv) != meta_str(&current, "resourceVersion"))
                    .map(str::to_string);
                (patched, pre, None)
            }
        };
        if let Some(pre) = &precondition
            && pre != &row.rev.to_string()
        {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        check_identity(t, &mut candidate)?;
        // A body uid is a precondition too.
        if let (Some(u), Some(cur)) = (meta_str(&candidate, "uid"), meta_str(&stored, "uid"))
            && u != cur
        {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {u}, UID in object meta: {cur}"
                ),
            ));
        }
        // Subresource resets: main writes keep status, status writes keep everything else.
        match sub {
            Some("status") => {
                let mut next = stored.clone();
                next["status"] = candidate.get("status").cloned().unwrap_or(Value::Null);
                if next["status"].is_null()
                    && let Some(m) = next.as_object_mut()
                {
                    m.remove("status");
                }
                if let Some(mf) = meta::meta(&candidate)
                    .and_then(|m| m.get("managedFields"))
                    .cloned()
                {
                    meta_mut(&mut next).insert("managedFields".into(), mf);
                }
                next["apiVersion"] = json!(res.api_version());
                next["kind"] = json!(res.kind);
                candidate = next;
            }
            Some("finalize") => {
                let mut next = stored.clone();
                next["spec"]["finalizers"] = candidate
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                candidate = next;
            }
            _ if res.has_status() => match stored.get("status") {
                Some(s) => candidate["status"] = s.clone(),
                None => {
                    if let Some(m) = candidate.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            _ => {}
        }
        // System-owned metadata comes from storage.
        let user_managed = meta::meta(&candidate)
            .and_then(|m| m.get("managedFields"))
            .cloned();
        {
            let old_meta = meta::meta(&stored).cloned().unwrap_or_default();
            let m = meta_mut(&mut candidate);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(f) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
        }
        let mut next = finish(
            state,
            t,
            candidate,
            Some(&stored),
            o,
            &mut warnings,
            Admit::Update(&current),
        )
        .await?;
        if res.tracks_generation && spec_part(&res, &next) != spec_part(&res, &stored) {
            let g = meta::meta(&stored)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut next).insert("generation".into(), json!(g + 1));
        }
        let managed = match managed {
            Some(m) => m,
            None => {
                // A client may rewrite managedFields itself (kubectl's client-side → server-side
                // apply migration); otherwise this write is recorded as an Update.
                let explicit: Option<Vec<rdd_ssa::ManagedFieldsEntry>> = user_managed
                    .filter(|v| Some(v) != meta::meta(&stored).and_then(|m| m.get("managedFields")))
                    .map(|v| {
                        serde_json::from_value(v).map_err(|e| {
                            ApiError::bad_request(format!("metadata.managedFields: {e}"))
                        })
                    })
                    .transpose()?;
                match explicit {
                    Some(m) => m,
                    None => rdd_ssa::update(
                        Some(&without_managed(&stored)),
                        &without_managed(&next),
                        &old_managed,
                        &o.manager,
                        &res.api_version(),
                        sub,
                        scope(&res, sub),
                        res.schema.as_deref(),
                        &now,
                    ),
                }
            }
        };
        set_managed(&mut next, managed);
        if res.flavor == Flavor::Crd {
            crd::on_update(state, &mut next, &stored)?;
        }
        validating_admission(
            state,
            &crate::admission::Request {
                operation: "UPDATE",
                res: &res,
                subresource: sub,
                namespace: &t.namespace,
                name: &name,
                object: Some(&next),
                old_object: Some(&current),
                user: &o.user,
                dry_run: o.dry_run,
                options: &o.options,
            },
            &mut warnings,
        )
        .await?;
        let stored_view = to_storage(&res, &next);
        // A write that changes nothing bumps no revision and emits no event.
        if normalized(&next) == normalized(&stored) {
            ctx.warnings.extend(warnings);
            return Ok((current, false));
        }
        if o.dry_run {
            ctx.warnings.extend(warnings);
            return Ok((present_view(&res, &next, row.rev), false));
        }
        // The last finalizer gone from a deleting object: the object goes.
        let finished = deletion_finished(&res, &next);
        let result = if finished {
            state
                .store
                .write(WriteOp::Delete {
                    key: key.clone(),
                    expected_rev: row.rev,
                })
                .await
        } else {
            state
                .store
                .write(WriteOp::Update {
                    key: key.clone(),
                    expected_rev: row.rev,
                    value: stored_view,
                })
                .await
        };
        match result {
            Ok(ev) => {
                after_commit(state, &res, &ev).await;
                ctx.warnings.extend(warnings);
                let out = if finished {
                    present_view(&res, &next, ev.rev)
                } else {
                    present(&res, &ev.object, ev.rev)
                };
                return Ok((out, false));
            }
            Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound)
                if precondition.is_none() =>
            {
                continue;
            }
            Err(StoreError::Conflict { .. }) => {
                return Err(ApiError::conflict(
                    &res.group,
                    &res.plural,
                    &name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            Err(StoreError::NotFound) => {
                return Err(ApiError::not_found(&res.group, &res.plural, &name));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        &res.group,
        &res.plural,
        &name,
        "too many concurrent writes; try again",
    ))
}

/// A deleting object whose last finalizer is gone (for namespaces: also the `kubernetes`
/// finalizer in `spec`) leaves storage instead of being updated.
fn deletion_finished(res: &Resource, obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
        && meta::finalizers(obj).is_empty()
        && !(res.flavor == Flavor::Namespace
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()))
}

fn normalized(v: &Value) -> Value {
    let mut o = v.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    propagation_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preconditions: Option<Preconditions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    /// As webhooks receive it (`options` of a DELETE review).
    fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        v["kind"] = json!("DeleteOptions");
        v["apiVersion"] = json!("meta.k8s.io/v1");
        v
    }
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<String>,
}

fn delete_options(ctx: &Ctx) -> Result<DeleteOptions, ApiError> {
    let mut d: DeleteOptions = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else if ctx.content_type() == crate::protobuf::MEDIA_TYPE {
        serde_json::from_value(crate::protobuf::decode(&ctx.body)?)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(p) = ctx.query.get("propagationPolicy") {
        d.propagation_policy = Some(p.to_string());
    }
    if let Some(p) = &d.propagation_policy
        && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Background\", \"Foreground\", \"Orphan\""
        )));
    }
    let q = ctx.query.all("dryRun");
    if !q.is_empty() {
        d.dry_run = Some(q.iter().map(|s| s.to_string()).collect());
    }
    if let Some(bad) = d.dry_run.iter().flatten().find(|v| *v != "All") {
        return Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: \"{bad}\": supported values: \"All\""
        )));
    }
    Ok(d)
}

pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub async fn delete(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    let d = delete_options(ctx)?;
    let name = t.name.clone().unwrap_or_default();
    let (obj, done) = delete_one(state, t, &name, &d, &ctx.user, &mut ctx.warnings).await?;
    if done && !t.res.structural && !matches!(t.res.flavor, Flavor::Namespace | Flavor::Crd) {
        return Ok(json_response(
            200,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": t.res.group, "kind": t.res.plural, "uid": meta_str(&obj, "uid").unwrap_or("")},
            }),
            &ctx.warnings,
        ));
    }
    Ok(json_response(200, &obj, &ctx.warnings))
}

/// Delete one object; returns the object and whether it is gone (false: waiting on finalizers).
async fn delete_one(
    state: &Arc<State>,
    t: &Target,
    name: &str,
    d: &DeleteOptions,
    user: &crate::auth::UserInfo,
    warnings: &mut Vec<String>,
) -> Result<(Value, bool), ApiError> {
    let res = &t.res;
    let key = res.key(&t.namespace, name);
    if res.flavor == Flavor::Namespace && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    let dry = d.dry_run.as_ref().is_some_and(|v| !v.is_empty());
    let options = d.to_json();
    for _ in 0..16 {
        let row = state
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))?;
        let stored = row.value.as_ref();
        if let Some(p) = &d.preconditions {
            if let Some(u) = p
                .uid
                .as_deref()
                .filter(|u| Some(*u) != meta_str(stored, "uid"))
            {
                return Err(ApiError::conflict(
                    &res.group,
                    &res.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {u}, UID in object meta: {}",
                        meta_str(stored, "uid").unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = p
                .resource_version
                .as_deref()
                .filter(|rv| *rv != row.rev.to_string())
            {
                return Err(ApiError::conflict(
                    &res.group,
                    &res.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        row.rev
                    ),
                ));
            }
        }
        let old_view = crate::handlers::present(res, stored, row.rev);
        let req = crate::admission::Request {
            operation: "DELETE",
            res,
            subresource: None,
            namespace: &t.namespace,
            name,
            object: None,
            old_object: Some(&old_view),
            user,
            dry_run: dry,
            options: &options,
        };
        crate::webhook::mutate(state, &req, None, warnings).await?;
        validating_admission(state, &req, warnings).await?;
        // Orphan and Foreground hold the owner with a finalizer that the garbage collector
        // removes once dependents are orphaned or gone (`gc.rs`); Background deletes now and
        // the collector removes dependents afterwards.
        let mut finalizers = meta::finalizers(stored);
        let deleting = meta_str(stored, "deletionTimestamp").is_some();
        if !deleting {
            let orphan = d.propagation_policy.as_deref() == Some("Orphan")
                || (d.propagation_policy.is_none() && d.orphan_dependents == Some(true));
            let foreground = d.propagation_policy.as_deref() == Some("Foreground");
            let add = if orphan {
                Some(crate::gc::ORPHAN)
            } else if foreground {
                Some(crate::gc::FOREGROUND)
            } else {
                None
            };
            if let Some(f) = add.filter(|f| !finalizers.iter().any(|x| x == f)) {
                finalizers.push(f.to_string());
            }
        }
        let ns_pending = res.flavor == Flavor::Namespace
            && stored
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        // Without finalizers the object goes now; otherwise deletion starts and waits for them.
        let (op, gone) = if finalizers.is_empty() && !ns_pending {
            if dry {
                return Ok((present(res, stored, row.rev), true));
            }
            (
                WriteOp::Delete {
                    key: key.clone(),
                    expected_rev: row.rev,
                },
                true,
            )
        } else {
            if deleting {
                return Ok((present(res, stored, row.rev), false));
            }
            let mut next = stored.clone();
            {
                let m = meta_mut(&mut next);
                m.insert("deletionTimestamp".into(), json!(meta::now()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                m.insert("finalizers".into(), json!(finalizers));
                if res.tracks_generation {
                    let g = m.get("generation").and_then(Value::as_i64).unwrap_or(1);
                    m.insert("generation".into(), json!(g + 1));
                }
            }
            if res.flavor == Flavor::Namespace {
                next["status"]["phase"] = json!("Terminating");
            }
            if dry {
                return Ok((present(res, &next, row.rev), false));
            }
            (
                WriteOp::Update {
                    key: key.clone(),
                    expected_rev: row.rev,
                    value: next,
                },
                false,
            )
        };
        match state.store.write(op).await {
            Ok(ev) => {
                after_commit(state, res, &ev).await;
                return Ok((present(res, &ev.object, ev.rev), gone));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound) => {
                return Err(ApiError::not_found(&res.group, &res.plural, name));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        &res.group,
        &res.plural,
        name,
        "too many concurrent writes; try again",
    ))
}

pub async fn delete_collection(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    let d = delete_options(ctx)?;
    let filter = crate::handlers::Filter::from_query(ctx, &t.res)?;
    let (items, _, _) =
        crate::handlers::list_objects(state, &t.res, &t.namespace, &filter, 0, None, 0).await?;
    let mut deleted = Vec::new();
    for obj in items {
        let ns = meta_str(&obj, "namespace").unwrap_or("").to_string();
        let name = meta::name(&obj).to_string();
        let target = Target {
            namespace: ns,
            name: Some(name.clone()),
            ..t.clone()
        };
        match delete_one(state, &target, &name, &d, &ctx.user, &mut ctx.warnings).await {
            Ok((o, _)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(), "metadata": {}, "items": deleted}),
        &ctx.warnings,
    ))
}

/// Delete used by in-process controllers (namespace and CRD cleanup).
pub async fn delete_internal(
    state: &Arc<State>,
    res: &Arc<Resource>,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    delete_internal_with(state, res, namespace, name, None).await
}

/// [`delete_internal`] with a propagation policy (`Foreground`, `Orphan`; `None` =
/// Background), as the garbage collector deletes dependents of a foreground deletion.
pub async fn delete_internal_with(
    state: &Arc<State>,
    res: &Arc<Resource>,
    namespace: &str,
    name: &str,
    propagation: Option<&str>,
) -> Result<(), ApiError> {
    let t = Target {
        res: res.clone(),
        namespace: namespace.to_string(),
        name: Some(name.to_string()),
        sub: None,
    };
    let system = crate::auth::UserInfo {
        username: "system:apiserver".into(),
        uid: String::new(),
        groups: vec!["system:masters".into()],
    };
    let options = DeleteOptions {
        propagation_policy: propagation.map(str::to_string),
        ..Default::default()
    };
    match delete_one(state, &t, name, &options, &system, &mut Vec::new()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create used by the server itself (bootstrap). Existing objects are left alone.
pub async fn create_internal(
    state: &Arc<State>,
    res: &Arc<Resource>,
    namespace: &str,
    obj: Value,
) -> Result<(), ApiError> {
    let name = meta::name(&obj).to_string();
    let t = Target {
        res: res.clone(),
        namespace: namespace.to_string(),
        name: Some(name.clone()),
        sub: None,
    };
    let o = Opts {
        user: crate::auth::UserInfo {
            username: "system:apiserver".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        },
        dry_run: false,
        manager: "rdd-apiserver".into(),
        validation: FieldValidation::Ignore,
        options: json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
    };
    // Only missing objects are created, so restarts never wait on admission webhooks.
    if state.store.get(&res.key(namespace, &name)).await?.is_some() {
        return Ok(());
    }
    let mut warnings = Vec::new();
    let mut obj = obj;
    check_identity(&t, &mut obj)?;
    match create_object(state, &t, obj, &o, &mut warnings, &name, None).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replace a stored object as the server (status and finalizer bookkeeping); CAS on `rev`.
pub async fn store_internal(
    state: &Arc<State>,
    res: &Arc<Resource>,
    key: &str,
    rev: i64,
    next: Value,
) -> Result<(), ApiError> {
    let finished = deletion_finished(res, &next);
    let r = if finished {
        state
            .store
            .write(WriteOp::Delete {
                key: key.to_string(),
                expected_rev: rev,
            })
            .await
    } else {
        state
            .store
            .write(WriteOp::Update {
                key: key.to_string(),
                expected_rev: rev,
                value: next,
            })
            .await
    };
    match r {
        Ok(ev) => {
            after_commit(state, res, &ev).await;
            Ok(())
        }
        Err(StoreError::Conflict { .. } | StoreError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
