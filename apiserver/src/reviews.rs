//! Self reviews (`kubectl auth whoami`, `kubectl auth can-i`): answered from the caller's
//! identity and never stored. Every authenticated user may do everything until RBAC
//! enforcement lands, and the answers say exactly that.

use http::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::handlers::Target;
use crate::registry::Flavor;
use crate::request::{Body, Ctx, decode_body, json_response};

const ALLOW_ALL: &str = "rdd authorizes every authenticated user (no RBAC enforcement yet)";

pub fn answer(t: &Target, ctx: &Ctx) -> Result<Option<Response<Body>>, ApiError> {
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
            json!({"allowed": true, "reason": ALLOW_ALL})
        }
        _ => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
            "evaluationError": "",
        }),
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
