//! Self reviews (`kubectl auth whoami`, `kubectl auth can-i [--list]`): answered from the
//! caller's identity by the same authorizer that guards requests, and never stored.

use http::Response;
use serde_json::{Value, json};

use crate::authz::Attributes;
use crate::error::ApiError;
use crate::handlers::Target;
use crate::registry::Flavor;
use crate::request::{Body, Ctx, decode_body, json_response};
use crate::server::State;

fn text(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn access_review(state: &State, ctx: &Ctx, spec: &Value) -> Value {
    let attrs = if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        Attributes {
            verb: text(r, "/verb"),
            resource_request: true,
            group: text(r, "/group"),
            version: text(r, "/version"),
            resource: text(r, "/resource"),
            subresource: text(r, "/subresource"),
            name: text(r, "/name"),
            namespace: text(r, "/namespace"),
            path: String::new(),
        }
    } else {
        Attributes::non_resource(
            &text(spec, "/nonResourceAttributes/verb"),
            &text(spec, "/nonResourceAttributes/path"),
        )
    };
    let d = state.authz.authorize(&ctx.user, &attrs);
    let mut out = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        out["reason"] = json!(d.reason);
    }
    out
}

fn rules_review(state: &State, ctx: &Ctx, spec: &Value) -> Value {
    let (rules, errors) = state.authz.rules_for(&ctx.user, &text(spec, "/namespace"));
    let mut out = json!({
        "resourceRules": rules.iter().filter_map(|r| r.resource_rule_json()).collect::<Vec<_>>(),
        "nonResourceRules": rules.iter().filter_map(|r| r.non_resource_rule_json()).collect::<Vec<_>>(),
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        out["evaluationError"] = json!(errors.join(", "));
    }
    out
}

pub fn answer(state: &State, t: &Target, ctx: &Ctx) -> Result<Option<Response<Body>>, ApiError> {
    let kind = match t.res.flavor {
        Flavor::SelfSubjectReview
        | Flavor::SelfSubjectAccessReview
        | Flavor::SelfSubjectRulesReview => &t.res.kind,
        _ => return Ok(None),
    };
    let body = decode_body(ctx)?;
    if body
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != kind)
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data does not match the expected kind ({kind})"
        )));
    }
    let user = &ctx.user;
    let status = match t.res.flavor {
        Flavor::SelfSubjectReview => {
            json!({"userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups}})
        }
        Flavor::SelfSubjectAccessReview => {
            if body.pointer("/spec/resourceAttributes").is_none()
                && body.pointer("/spec/nonResourceAttributes").is_none()
            {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{kind}.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
                    ),
                ));
            }
            access_review(state, ctx, &body["spec"])
        }
        _ => rules_review(state, ctx, &body["spec"]),
    };
    let out = json!({
        "kind": kind,
        "apiVersion": t.res.api_version(),
        "metadata": {"creationTimestamp": crate::meta::now()},
        "spec": body.get("spec").cloned().unwrap_or(json!({})),
        "status": status,
    });
    let mut r = json_response(201, &out, &[]);
    *r.status_mut() = http::StatusCode::CREATED;
    Ok(Some(r))
}
