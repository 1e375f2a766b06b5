//! Resource endpoints: path parsing, reads (get, list) and dispatch to writes and watches.

use std::sync::Arc;

use base64::Engine;
use http::{Method, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::meta;
use crate::registry::{Flavor, Resource};
use crate::request::{Body, Ctx, Wants, json_response, negotiate};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::State;
use crate::storage::Row;
use crate::{table, watch, write};

/// A parsed resource path.
#[derive(Debug, Clone)]
pub struct Target {
    pub res: Arc<Resource>,
    pub namespace: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn parse_target(state: &State, g: &str, v: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let reg = state.registry();
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, "status" | "finalize"] => ("", "namespaces", Some(*ns), Some(rest[2])),
        ["namespaces", ns, plural, tail @ ..]
            if reg.get(g, v, plural).is_some_and(|r| r.namespaced) =>
        {
            match tail {
                [] => (*ns, *plural, None, None),
                [name] => (*ns, *plural, Some(*name), None),
                [name, sub] => (*ns, *plural, Some(*name), Some(*sub)),
                _ => return Err(not_found_path()),
            }
        }
        [plural] => ("", *plural, None, None),
        [plural, name] => ("", *plural, Some(*name), None),
        [plural, name, sub] => ("", *plural, Some(*name), Some(*sub)),
        _ => return Err(not_found_path()),
    };
    let res = reg.get(g, v, plural).ok_or_else(not_found_path)?;
    if let Some(s) = sub
        && !res.subresources.iter().any(|x| x == s)
    {
        return Err(not_found_path());
    }
    if !res.namespaced && !ns.is_empty() {
        return Err(not_found_path());
    }
    Ok(Target {
        res,
        namespace: ns.to_string(),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    })
}

pub async fn resource(
    state: &Arc<State>,
    ctx: &mut Ctx,
    g: &str,
    v: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    // Legacy `/watch/` path prefix: same as `?watch=true`.
    let (rest, legacy_watch) = match rest {
        ["watch", tail @ ..] => (tail, true),
        _ => (rest, false),
    };
    let t = parse_target(state, g, v, rest)?;
    let verb_ok = |verb: &str| t.res.verbs.contains(&verb);
    let watching = legacy_watch || ctx.query.flag("watch")?;
    match (&ctx.method, &t.name) {
        (&Method::GET, None) if watching => watch::watch(state, ctx, &t).await,
        (&Method::GET, Some(name)) if watching => {
            // A watch on one object is a watch with a name field selector.
            watch::watch_named(state, ctx, &t, name).await
        }
        (&Method::GET, Some(_)) => get(state, ctx, &t).await,
        (&Method::GET, None) => list(state, ctx, &t).await,
        (&Method::POST, None) if verb_ok("create") => write::create(state, ctx, &t).await,
        (&Method::PUT, Some(_)) if verb_ok("update") || t.sub.is_some() => {
            write::update(state, ctx, &t).await
        }
        (&Method::PATCH, Some(_)) if verb_ok("patch") => write::patch(state, ctx, &t).await,
        (&Method::DELETE, Some(_)) if verb_ok("delete") && t.sub.is_none() => {
            write::delete(state, ctx, &t).await
        }
        (&Method::DELETE, None) if verb_ok("deletecollection") => {
            write::delete_collection(state, ctx, &t).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            ctx.method, ctx.path
        ))),
    }
}

/// A stored object in the shape of this resource's version (the events.k8s.io view of core
/// Events is converted; everything else is stored as served).
pub fn to_view(res: &Resource, stored: &Value) -> Value {
    if res.flavor == Flavor::EventsV1 {
        crate::events::core_to_v1(stored)
    } else {
        stored.clone()
    }
}

/// The inverse of [`to_view`].
pub fn to_storage(res: &Resource, view: &Value) -> Value {
    if res.flavor == Flavor::EventsV1 {
        crate::events::v1_to_core(view)
    } else {
        view.clone()
    }
}

/// An object already in this resource's shape, as served.
pub fn present_view(res: &Resource, view: &Value, rev: i64) -> Value {
    served(res, view.clone(), rev)
}

/// A stored object as a client of this resource's version sees it (one copy of the object).
pub fn present(res: &Resource, stored: &Value, rev: i64) -> Value {
    served(res, to_view(res, stored), rev)
}

fn served(res: &Resource, mut o: Value, rev: i64) -> Value {
    if rev > 0 {
        meta::meta_mut(&mut o).insert("resourceVersion".into(), json!(rev.to_string()));
    }
    o["apiVersion"] = json!(res.api_version());
    o["kind"] = json!(res.kind);
    o
}

pub fn present_row(res: &Resource, row: &Row) -> Value {
    present(res, &row.value, row.rev)
}

async fn get(state: &Arc<State>, ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let wants = negotiate(&ctx.headers, false, true)?;
    let name = t.name.as_deref().unwrap_or("");
    let row = state
        .store
        .get(&t.res.key(&t.namespace, name))
        .await?
        .ok_or_else(|| ApiError::not_found(&t.res.group, &t.res.plural, name))?;
    let obj = present_row(&t.res, &row);
    render_one(&t.res, ctx, wants, obj)
}

pub fn render_one(
    res: &Resource,
    ctx: &Ctx,
    wants: Wants,
    obj: Value,
) -> Result<Response<Body>, ApiError> {
    let out = match wants {
        Wants::Table => table::table(
            res,
            ctx,
            std::slice::from_ref(&obj),
            json!({"resourceVersion": meta::meta_str(&obj, "resourceVersion").unwrap_or("")}),
        )?,
        Wants::PartialMetadata => partial(&obj),
        _ => obj,
    };
    Ok(json_response(200, &out, &ctx.warnings))
}

pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| ApiError::bad_request("invalid continue token"))?;
    serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("invalid continue token"))
}

/// Selection criteria of a list or watch.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(ctx: &Ctx, res: &Resource) -> Result<Filter, ApiError> {
        Ok(Filter {
            labels: LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""), res)?,
        })
    }

    /// `obj` is the presented object (resource's own view).
    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        self.labels.matches(meta::labels(obj)) && self.fields.matches(res, obj)
    }
}

/// Parse list resourceVersion semantics into the revision to read at (0 = newest).
fn list_revision(ctx: &Ctx) -> Result<i64, ApiError> {
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    let m = ctx.query.get("resourceVersionMatch").unwrap_or("");
    if !m.is_empty() && rv.is_empty() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if m == "Exact" && ctx.query.get("continue").is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden when continue is provided",
        ));
    }
    if !matches!(m, "" | "Exact" | "NotOlderThan") {
        return Err(ApiError::bad_request(format!(
            "unsupported resourceVersionMatch {m:?}"
        )));
    }
    let n: i64 = match rv {
        "" | "0" => 0,
        s => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
    };
    if m == "Exact" && n == 0 {
        return Err(ApiError::bad_request(
            "resourceVersionMatch Exact requires a non-zero resourceVersion",
        ));
    }
    Ok(if m == "Exact" { n } else { 0 })
}

pub async fn list_objects(
    state: &Arc<State>,
    res: &Resource,
    namespace: &str,
    filter: &Filter,
    at: i64,
    start: Option<String>,
    limit: usize,
) -> Result<(Vec<Value>, i64, Option<String>), ApiError> {
    let prefix = res.prefix(namespace);
    let mut items = Vec::new();
    let mut start = start;
    let mut rev = at;
    // Pin the revision at the first read so every page sees one snapshot.
    loop {
        let page = if limit == 0 {
            0
        } else {
            (limit - items.len()).max(1).max(100)
        };
        let (rows, read_rev, more) = state.store.list(&prefix, rev, start.clone(), page).await?;
        rev = read_rev;
        for row in &rows {
            let obj = present_row(res, row);
            if filter.matches(res, &obj) {
                items.push(obj);
                if limit > 0 && items.len() == limit {
                    let last_key = row.key.clone();
                    let has_more = more || rows.last().is_some_and(|l| l.key != last_key);
                    return Ok((
                        items,
                        rev,
                        has_more.then(|| encode_continue(rev, &last_key)),
                    ));
                }
            }
        }
        match (more, rows.last()) {
            (true, Some(last)) => start = Some(last.key.clone()),
            _ => return Ok((items, rev, None)),
        }
    }
}

async fn list(state: &Arc<State>, ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let wants = negotiate(&ctx.headers, false, true)?;
    let filter = Filter::from_query(ctx, &t.res)?;
    let limit = ctx.query.int("limit")?.unwrap_or(0).max(0) as usize;
    let (at, start) = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let tok = decode_continue(c)?;
            // rv 0 marks the inconsistent continuation handed out with a 410: read the newest.
            if tok.rv != 0 && tok.rv < state.store.compacted_rev() {
                let mut e = ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                );
                e.continue_token = Some(encode_continue(0, &tok.start));
                return Err(e);
            }
            (tok.rv, Some(tok.start))
        }
        None => (list_revision(ctx)?, None),
    };
    let (items, rev, cont) =
        list_objects(state, &t.res, &t.namespace, &filter, at, start, limit).await?;
    let mut list_meta = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = &cont {
        list_meta["continue"] = json!(c);
        if let Some(last) = items.last() {
            let last_key = t.res.key(
                meta::meta_str(last, "namespace").unwrap_or(""),
                meta::name(last),
            );
            if filter.labels.is_empty() && filter.fields.is_empty() {
                let remaining = state
                    .store
                    .count_after(&t.res.prefix(&t.namespace), rev, last_key)
                    .await?;
                list_meta["remainingItemCount"] = json!(remaining);
            }
        }
    }
    let out = match wants {
        Wants::Table => table::table(&t.res, ctx, &items, list_meta)?,
        Wants::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        _ => json!({
            "kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(),
            "metadata": list_meta, "items": items,
        }),
    };
    Ok(json_response(200, &out, &ctx.warnings))
}
