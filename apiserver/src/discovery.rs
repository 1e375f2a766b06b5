//! Legacy and aggregated (apidiscovery.k8s.io/v2) discovery, both derived from the registry.

use std::sync::Arc;

use http::{HeaderValue, Response, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::registry::{Registry, Resource};
use crate::request::{Body, Ctx, Wants, json_response, negotiate};
use crate::server::State;

const V2_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn wants_v2(state: &State, ctx: &Ctx) -> Result<bool, ApiError> {
    let w = negotiate(
        &ctx.headers,
        !state.config.disable_aggregated_discovery,
        false,
    )?;
    Ok(w == Wants::DiscoveryV2)
}

pub fn core_root(state: &Arc<State>, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let reg = state.registry();
    if wants_v2(state, ctx)? {
        let items: Vec<Value> = reg
            .groups()
            .into_iter()
            .filter(|(g, _)| g.is_empty())
            .map(|(g, vs)| group_v2(&reg, &g, &vs))
            .collect();
        return Ok(v2_response(ctx, items));
    }
    Ok(json_response(
        200,
        &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", state.config.port)}]}),
        &[],
    ))
}

pub fn apis_root(state: &Arc<State>, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let reg = state.registry();
    let groups: Vec<(String, Vec<String>)> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .collect();
    if wants_v2(state, ctx)? {
        let items = groups.iter().map(|(g, vs)| group_v2(&reg, g, vs)).collect();
        return Ok(v2_response(ctx, items));
    }
    let list: Vec<Value> = groups.iter().map(|(g, vs)| api_group(g, vs)).collect();
    Ok(json_response(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
        &[],
    ))
}

fn api_group(g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

pub fn group(state: &Arc<State>, g: &str) -> Result<Response<Body>, ApiError> {
    let reg = state.registry();
    match reg.groups().into_iter().find(|(name, _)| name == g) {
        Some((name, vs)) => {
            let mut v = api_group(&name, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            Ok(json_response(200, &v, &[]))
        }
        None => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

fn storage_version_hash(r: &Resource) -> String {
    use base64::Engine;
    let h = Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&h[..8])
}

pub fn resource_list(state: &Arc<State>, g: &str, v: &str) -> Result<Response<Body>, ApiError> {
    let reg = state.registry();
    if !reg.has_group_version(g, v) {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let mut out = Vec::new();
    for r in reg.resources_of(g, v) {
        let mut e = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs, "storageVersionHash": storage_version_hash(&r),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        out.push(e);
        for sub in &r.subresources {
            let verbs: &[&str] = if sub == "finalize" {
                &["update"]
            } else {
                &["get", "patch", "update"]
            };
            out.push(json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs}));
        }
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    Ok(json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
        &[],
    ))
}

fn group_v2(reg: &Registry, g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| {
            let resources: Vec<Value> = reg
                .resources_of(g, v)
                .iter()
                .map(|r| {
                    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
                    let mut e = json!({
                        "resource": r.plural, "responseKind": kind,
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular, "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    if !r.subresources.is_empty() {
                        e["subresources"] = Value::Array(
                            r.subresources
                                .iter()
                                .map(|s| {
                                    let verbs: &[&str] = if s == "finalize" {
                                        &["update"]
                                    } else {
                                        &["get", "patch", "update"]
                                    };
                                    json!({"subresource": s, "responseKind": kind, "verbs": verbs})
                                })
                                .collect(),
                        );
                    }
                    e
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
}

fn v2_response(ctx: &Ctx, items: Vec<Value>) -> Response<Body> {
    let doc = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..16]));
    let not_modified = ctx
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut r = if not_modified {
        let mut r = Response::new(crate::request::full(Vec::new()));
        *r.status_mut() = http::StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(crate::request::full(bytes))
    };
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(V2_CONTENT_TYPE),
    );
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}
