//! OpenAPI v3 (one document per group/version, plus the index) and v2 JSON.
//!
//! kubectl reads these to decide on server-side field validation (it looks for the
//! `fieldValidation` parameter on the kind's PATCH operation, using Namespace's for CRDs), on
//! strategic merge for client-side apply, and for `explain`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::registry::{Registry, Resource};
use crate::request::{Body, Ctx, full, json_response};
use crate::server::State;

const REF: &str = "#/components/schemas/";

/// Documents of one registry generation: path ("api/v1", "apis/g/v") → (hash, JSON).
/// path → (hash, document)
type Docs = Arc<BTreeMap<String, (String, Bytes)>>;

#[derive(Default)]
pub struct Cache(Mutex<Option<(u64, Docs)>>);

fn docs(state: &State) -> Docs {
    let reg = state.registry();
    if let Ok(c) = state.openapi.0.lock()
        && let Some((g, d)) = c.as_ref()
        && *g == reg.generation
    {
        return d.clone();
    }
    let mut out = BTreeMap::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let path = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let doc = gv_document(state, &reg, &g, &v);
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let hash = hex::encode(&Sha256::digest(&bytes)[..16]).to_uppercase();
            out.insert(path, (hash, Bytes::from(bytes)));
        }
    }
    let out = Arc::new(out);
    if let Ok(mut c) = state.openapi.0.lock() {
        *c = Some((reg.generation, out.clone()));
    }
    out
}

pub fn v3_index(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    let d = docs(state);
    let mut paths = Map::new();
    for (p, (h, _)) in d.iter() {
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
        );
    }
    Ok(json_response(200, &json!({"paths": paths}), &[]))
}

pub fn v3_doc(state: &Arc<State>, ctx: &Ctx, path: &str) -> Result<Response<Body>, ApiError> {
    let d = docs(state);
    let Some((hash, bytes)) = d.get(path) else {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("no OpenAPI document for {path}"),
        ));
    };
    let mut r = Response::new(full(bytes.clone()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let cache = if ctx.query.get("hash") == Some(hash.as_str()) {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

pub fn v2(state: &Arc<State>, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let accept = ctx
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json_ok = accept.is_empty()
        || accept.split(',').any(|a| {
            let m = a.split(';').next().unwrap_or("").trim();
            m == "application/json" || m == "*/*"
        });
    if !json_ok {
        return Err(ApiError::not_acceptable(
            "only application/json is served for /openapi/v2; use /openapi/v3",
        ));
    }
    let reg = state.registry();
    let mut defs = Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let doc = gv_document(state, &reg, &g, &v);
            if let Some(Value::Object(s)) = doc.pointer("/components/schemas") {
                for (k, val) in s {
                    defs.insert(k.clone(), rewrite_refs(val, REF, "#/definitions/"));
                }
            }
        }
    }
    let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": crate::server::KUBE_VERSION}, "paths": {}, "definitions": defs});
    Ok(json_response(200, &doc, &[]))
}

fn rewrite_refs(v: &Value, from: &str, to: &str) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, val)| {
                    if k == "$ref"
                        && let Some(s) = val.as_str()
                    {
                        return (k.clone(), json!(s.replacen(from, to, 1)));
                    }
                    (k.clone(), rewrite_refs(val, from, to))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| rewrite_refs(x, from, to)).collect()),
        other => other.clone(),
    }
}

/// The component name of a CRD kind, as kube-apiserver names it (reversed group).
pub fn crd_component_name(r: &Resource) -> String {
    let rev: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", rev.join("."), r.version, r.kind)
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, val) in o {
                if k == "$ref" {
                    if let Some(n) = val.as_str().and_then(|s| s.strip_prefix(REF)) {
                        out.push(n.to_string());
                    }
                } else {
                    collect_refs(val, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn gv_document(state: &State, reg: &Registry, g: &str, v: &str) -> Value {
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let mut paths = Map::new();
    for r in reg.resources_of(g, v) {
        let comp = if let Some(name) =
            state
                .schemas
                .roots
                .get(&(r.group.clone(), r.version.clone(), r.kind.clone()))
        {
            if let Some(s) = state.schemas.components.get(name) {
                schemas.insert(name.clone(), s.clone());
            }
            name.clone()
        } else {
            let name = crd_component_name(&r);
            schemas.insert(name.clone(), crd_schema(&r));
            name
        };
        add_paths(&mut paths, &r, &comp);
    }
    // Pull in everything the kinds reference (ObjectMeta and friends).
    let mut todo: Vec<String> = Vec::new();
    for s in schemas.values() {
        collect_refs(s, &mut todo);
    }
    todo.push("io.k8s.apimachinery.pkg.apis.meta.v1.Status".into());
    schemas.insert("io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(), json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}));
    while let Some(n) = todo.pop() {
        if schemas.contains_key(&n) {
            continue;
        }
        let s = state
            .schemas
            .components
            .get(&n)
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        collect_refs(&s, &mut todo);
        schemas.insert(n, s);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::server::KUBE_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// A CRD version's schema as published: the CRD's own schema with the standard object fields.
fn crd_schema(r: &Resource) -> Value {
    let mut s = r
        .schema
        .as_deref()
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    if let Some(o) = s.as_object_mut() {
        let props = o.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."}));
            p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase."}));
            p.insert("metadata".into(), json!({"allOf": [{"$ref": format!("{REF}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")}], "description": "Standard object's metadata."}));
        }
        o.insert("type".into(), json!("object"));
        o.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
        );
    }
    s
}

fn param(name: &str, desc: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": ty, "uniqueItems": true}})
}

fn add_paths(paths: &mut Map<String, Value>, r: &Resource, comp: &str) {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let (coll, item) = if r.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", r.plural),
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        )
    } else {
        (
            format!("{base}/{}", r.plural),
            format!("{base}/{}/{{name}}", r.plural),
        )
    };
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let obj = json!({"application/json": {"schema": {"$ref": format!("{REF}{comp}")}}});
    let ok = json!({"200": {"description": "OK", "content": obj}});
    let write_params = vec![
        param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
            "string",
        ),
        param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
            "string",
        ),
        param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn (default), Strict.",
            "string",
        ),
    ];
    let mut patch_params = write_params.clone();
    patch_params.push(param(
        "force",
        "Force is going to \"force\" Apply requests.",
        "boolean",
    ));
    let mut patch_types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    if !r.structural {
        patch_types.push("application/strategic-merge-patch+json");
    }
    let patch_body: Map<String, Value> = patch_types
        .iter()
        .map(|t| (t.to_string(), json!({"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}})))
        .collect();
    let list_params: Vec<Value> = [
        ("labelSelector", "string"),
        ("fieldSelector", "string"),
        ("limit", "integer"),
        ("continue", "string"),
        ("resourceVersion", "string"),
        ("resourceVersionMatch", "string"),
        ("watch", "boolean"),
        ("allowWatchBookmarks", "boolean"),
        ("sendInitialEvents", "boolean"),
        ("timeoutSeconds", "integer"),
    ]
    .iter()
    .map(|(n, t)| param(n, n, t))
    .collect();
    let op = |action: &str, params: Vec<Value>| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": ok, "operationId": format!("{action}{}", r.kind)});
    let mut item_ops = Map::new();
    item_ops.insert("get".into(), op("get", vec![]));
    item_ops.insert("put".into(), {
        let mut o = op("put", write_params.clone());
        o["requestBody"] = json!({"content": obj, "required": true});
        o
    });
    item_ops.insert("patch".into(), {
        let mut o = op("patch", patch_params.clone());
        o["requestBody"] = json!({"content": patch_body, "required": true});
        o
    });
    item_ops.insert("delete".into(), op("delete", write_params.clone()));
    paths.insert(item, Value::Object(item_ops));
    let mut coll_ops = Map::new();
    coll_ops.insert("get".into(), op("list", list_params));
    coll_ops.insert("post".into(), {
        let mut o = op("post", write_params.clone());
        o["requestBody"] = json!({"content": obj, "required": true});
        o
    });
    coll_ops.insert(
        "delete".into(),
        op("deletecollection", write_params.clone()),
    );
    paths.insert(coll, Value::Object(coll_ops));
    if r.has_status() {
        let sp = if r.namespaced {
            format!(
                "{base}/namespaces/{{namespace}}/{}/{{name}}/status",
                r.plural
            )
        } else {
            format!("{base}/{}/{{name}}/status", r.plural)
        };
        // Subresource operations take the same write parameters: kubectl checks every PATCH of
        // the kind for `fieldValidation`, in no particular order.
        let mut patch = op("patch", patch_params);
        patch["requestBody"] = json!({"content": patch_body, "required": true});
        let mut put = op("put", write_params);
        put["requestBody"] = json!({"content": obj, "required": true});
        paths.insert(
            sp,
            json!({"get": op("get", vec![]), "put": put, "patch": patch}),
        );
    }
}
