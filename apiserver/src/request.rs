//! Request parsing (query, content negotiation) and response building.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::Value;

use crate::auth::UserInfo;
use crate::error::ApiError;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// Parsed query string; repeated keys keep the first value (as Go's `Get`), `dup` tells.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn flag(&self, k: &str) -> Result<bool, ApiError> {
        match self.get(k) {
            None | Some("") | Some("false") | Some("0") | Some("False") => Ok(false),
            Some("true") | Some("1") | Some("True") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for query parameter {k}: must be a boolean"
            ))),
        }
    }
    pub fn opt_flag(&self, k: &str) -> Result<Option<bool>, ApiError> {
        if self.get(k).is_none() {
            Ok(None)
        } else {
            self.flag(k).map(Some)
        }
    }
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value {v:?} for query parameter {k}: must be an integer"
                ))
            }),
        }
    }
}

/// What representation the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wants {
    Json,
    Yaml,
    Table,
    PartialMetadata,
    DiscoveryV2,
}

#[derive(Debug)]
struct MediaRange {
    mime: String,
    params: Vec<(String, String)>,
}

fn parse_accept(h: &str) -> Vec<MediaRange> {
    h.split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let mime = it.next()?.trim().to_ascii_lowercase();
            if mime.is_empty() {
                return None;
            }
            let params = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(MediaRange { mime, params })
        })
        .collect()
}

impl MediaRange {
    fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Choose the representation: the first acceptable range wins. `discovery` enables the
/// aggregated discovery type; `objects` enables Table and PartialObjectMetadata.
pub fn negotiate(headers: &HeaderMap, discovery: bool, objects: bool) -> Result<Wants, ApiError> {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if accept.trim().is_empty() {
        return Ok(Wants::Json);
    }
    for r in parse_accept(&accept) {
        match r.mime.as_str() {
            "application/json" | "application/*" | "*/*" => {
                match (r.param("as"), r.param("g"), r.param("v")) {
                    (None, _, _) => return Ok(Wants::Json),
                    (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2"))
                        if discovery =>
                    {
                        return Ok(Wants::DiscoveryV2);
                    }
                    (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) if objects => {
                        return Ok(Wants::Table);
                    }
                    (
                        Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                        Some("meta.k8s.io"),
                        Some("v1" | "v1beta1"),
                    ) if objects => return Ok(Wants::PartialMetadata),
                    _ => continue,
                }
            }
            "application/yaml" if r.param("as").is_none() => return Ok(Wants::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml",
    ))
}

pub struct Ctx {
    pub method: http::Method,
    pub path: String,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: UserInfo,
    pub warnings: Vec<String>,
}

impl Ctx {
    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    }

    pub fn user_agent_manager(&self) -> String {
        // Upstream defaults fieldManager to the User-Agent's product token.
        let ua = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        ua.split('/')
            .next()
            .unwrap_or(ua)
            .chars()
            .take(128)
            .collect()
    }
}

pub fn decode_body(ctx: &Ctx) -> Result<Value, ApiError> {
    let ct = ctx.content_type();
    decode_bytes(&ctx.body, &ct)
}

pub fn decode_bytes(body: &[u8], ct: &str) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let v: Value = if ct == crate::protobuf::MEDIA_TYPE {
        crate::protobuf::decode(body)?
    } else if ct.contains("yaml") {
        // Clients send apply patches (`application/apply-patch+yaml`) as JSON, which is YAML:
        // the JSON parser reads them to the same value at a fraction of the cost.
        match json_object(body) {
            Some(v) => v,
            None => {
                let s = std::str::from_utf8(body)
                    .map_err(|e| ApiError::bad_request(format!("body is not valid UTF-8: {e}")))?;
                yaml_to_json(s)?
            }
        }
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml: {e}"))
        })?
    };
    Ok(v)
}

/// `body` read as a JSON object, when it is one.
fn json_object(body: &[u8]) -> Option<Value> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice::<Value>(body).ok()
}

pub fn yaml_to_json(s: &str) -> Result<Value, ApiError> {
    // serde-saphyr's default budget bounds alias expansion and nesting ("billion laughs").
    serde_saphyr::from_str::<Value>(s)
        .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
}

pub fn json_response(code: u16, v: &Value, warnings: &[String]) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(full(bytes));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_warnings(&mut r, warnings);
    r
}

pub fn add_warnings(r: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("warning", v);
        }
    }
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status(), &[]);
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

pub fn text_response(code: u16, text: &str) -> Response<Body> {
    let mut r = Response::new(full(text.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_47_yaml_bodies_that_are_json_read_as_the_yaml_parser_reads_them() {
        let ct = "application/apply-patch+yaml";
        for body in [
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"1"}},"data":{"k":"v: w","n":"010"}}"#,
            "  {\"a\": [1, 2.5, true, null, \"s\"], \"b\": {}}\n",
        ] {
            let fast = decode_bytes(body.as_bytes(), ct).expect("decodes");
            let yaml = yaml_to_json(body).expect("yaml decodes");
            assert_eq!(fast, yaml, "{body}");
        }
        let y = decode_bytes(b"a: 1\nb: [x]\n", ct).expect("yaml");
        assert_eq!(y, serde_json::json!({"a": 1, "b": ["x"]}));
        assert!(decode_bytes(b"{not json: [", ct).is_err());
    }
}
