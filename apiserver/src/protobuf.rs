//! Decoding of the Kubernetes protobuf encoding for request bodies of the built-in kinds that
//! kubectl's typed generators send (`kubectl create configmap|secret|namespace|serviceaccount`
//! post `application/vnd.kubernetes.protobuf`). Responses are always JSON.
//!
//! The envelope is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message whose `raw`
//! field holds the object; field numbers follow the upstream `generated.proto` files.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

#[derive(Debug)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {msg}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint too long"))
}

/// Iterate over (field number, value) pairs of one message.
fn fields(buf: &[u8]) -> Result<Vec<(u32, Field<'_>)>, ApiError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = ((key >> 3) as u32, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("truncated field"))?;
                let s = &buf[pos..end];
                pos = end;
                Field::Bytes(s)
            }
            1 => {
                pos += 8;
                Field::Fixed
            }
            5 => {
                pos += 4;
                Field::Fixed
            }
            _ => return Err(bad("unsupported wire type")),
        };
        if pos > buf.len() {
            return Err(bad("truncated field"));
        }
        out.push((num, f));
    }
    Ok(out)
}

fn string(f: &Field<'_>) -> Result<String, ApiError> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8")),
        _ => Err(bad("expected a string")),
    }
}

fn bytes<'a>(f: &Field<'a>) -> Result<&'a [u8], ApiError> {
    match f {
        Field::Bytes(b) => Ok(b),
        _ => Err(bad("expected a message")),
    }
}

fn int(f: &Field<'_>) -> Result<i64, ApiError> {
    match f {
        Field::Varint(v) => Ok(*v as i64),
        _ => Err(bad("expected an integer")),
    }
}

/// map<string, string|bytes> entries (key = 1, value = 2).
fn map_entry(b: &[u8], binary: bool) -> Result<(String, Value), ApiError> {
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (n, f) in fields(b)? {
        match n {
            1 => k = string(&f)?,
            2 if binary => v = json!(base64::engine::general_purpose::STANDARD.encode(bytes(&f)?)),
            2 => v = json!(string(&f)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, ApiError> {
    let mut secs = 0;
    for (n, f) in fields(b)? {
        if n == 1 {
            secs = int(&f)?;
        }
    }
    let t = chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| bad("time out of range"))?;
    Ok(json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
}

fn insert_map(m: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    let e = m.entry(key).or_insert_with(|| json!({}));
    if let Some(o) = e.as_object_mut() {
        o.insert(entry.0, entry.1);
    }
}

fn push(m: &mut Map<String, Value>, key: &str, v: Value) {
    let e = m.entry(key).or_insert_with(|| json!([]));
    if let Some(a) = e.as_array_mut() {
        a.push(v);
    }
}

fn owner_reference(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match n {
            1 => {
                m.insert("kind".into(), json!(string(&f)?));
            }
            3 => {
                m.insert("name".into(), json!(string(&f)?));
            }
            4 => {
                m.insert("uid".into(), json!(string(&f)?));
            }
            5 => {
                m.insert("apiVersion".into(), json!(string(&f)?));
            }
            6 => {
                m.insert("controller".into(), json!(int(&f)? != 0));
            }
            7 => {
                m.insert("blockOwnerDeletion".into(), json!(int(&f)? != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn object_meta(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match n {
            1 => {
                m.insert("name".into(), json!(string(&f)?));
            }
            2 => {
                m.insert("generateName".into(), json!(string(&f)?));
            }
            3 => {
                m.insert("namespace".into(), json!(string(&f)?));
            }
            5 => {
                m.insert("uid".into(), json!(string(&f)?));
            }
            6 => {
                m.insert("resourceVersion".into(), json!(string(&f)?));
            }
            7 => {
                m.insert("generation".into(), json!(int(&f)?));
            }
            8 => {
                m.insert("creationTimestamp".into(), time(bytes(&f)?)?);
            }
            11 => insert_map(&mut m, "labels", map_entry(bytes(&f)?, false)?),
            12 => insert_map(&mut m, "annotations", map_entry(bytes(&f)?, false)?),
            13 => push(&mut m, "ownerReferences", owner_reference(bytes(&f)?)?),
            14 => push(&mut m, "finalizers", json!(string(&f)?)),
            _ => {}
        }
    }
    // Creation timestamps a client sends are ignored by the server anyway; drop the zero time.
    if m.get("creationTimestamp") == Some(&json!("1970-01-01T00:00:00Z")) {
        m.remove("creationTimestamp");
    }
    Ok(Value::Object(m))
}

fn local_object_reference(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match n {
            1 => {
                m.insert("name".into(), json!(string(&f)?));
            }
            2 => {
                m.insert("namespace".into(), json!(string(&f)?));
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn object(kind: &str, raw: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (n, f) in fields(raw)? {
        if n == 1 {
            m.insert("metadata".into(), object_meta(bytes(&f)?)?);
            continue;
        }
        match (kind, n) {
            ("ConfigMap", 2) => insert_map(&mut m, "data", map_entry(bytes(&f)?, false)?),
            ("ConfigMap", 3) => insert_map(&mut m, "binaryData", map_entry(bytes(&f)?, true)?),
            ("ConfigMap", 4) | ("Secret", 5) => {
                m.insert("immutable".into(), json!(int(&f)? != 0));
            }
            ("Secret", 2) => insert_map(&mut m, "data", map_entry(bytes(&f)?, true)?),
            ("Secret", 3) => {
                m.insert("type".into(), json!(string(&f)?));
            }
            ("Secret", 4) => insert_map(&mut m, "stringData", map_entry(bytes(&f)?, false)?),
            ("Namespace", 2) => {
                let mut spec = Map::new();
                for (sn, sf) in fields(bytes(&f)?)? {
                    if sn == 1 {
                        push(&mut spec, "finalizers", json!(string(&sf)?));
                    }
                }
                m.insert("spec".into(), Value::Object(spec));
            }
            ("ServiceAccount", 2) => push(&mut m, "secrets", local_object_reference(bytes(&f)?)?),
            ("ServiceAccount", 3) => push(
                &mut m,
                "imagePullSecrets",
                local_object_reference(bytes(&f)?)?,
            ),
            ("SelfSubjectAccessReview", 2) => {
                let mut spec = Map::new();
                for (sn, sf) in fields(bytes(&f)?)? {
                    let names: &[&str] = match sn {
                        1 => &[
                            "namespace",
                            "verb",
                            "group",
                            "version",
                            "resource",
                            "subresource",
                            "name",
                        ],
                        2 => &["path", "verb"],
                        _ => continue,
                    };
                    let mut attrs = Map::new();
                    for (an, af) in fields(bytes(&sf)?)? {
                        if let Some(k) = names.get(an as usize - 1).filter(|_| an >= 1) {
                            attrs.insert((*k).to_string(), json!(string(&af)?));
                        }
                    }
                    let key = if sn == 1 {
                        "resourceAttributes"
                    } else {
                        "nonResourceAttributes"
                    };
                    spec.insert(key.into(), Value::Object(attrs));
                }
                m.insert("spec".into(), Value::Object(spec));
            }
            ("SelfSubjectRulesReview", 2) => {
                let mut spec = Map::new();
                for (sn, sf) in fields(bytes(&f)?)? {
                    if sn == 1 {
                        spec.insert("namespace".into(), json!(string(&sf)?));
                    }
                }
                m.insert("spec".into(), Value::Object(spec));
            }
            ("ServiceAccount", 4) => {
                m.insert("automountServiceAccountToken".into(), json!(int(&f)? != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// meta/v1 DeleteOptions: gracePeriodSeconds 1, preconditions 2 {uid 1, resourceVersion 2},
/// orphanDependents 3, propagationPolicy 4, dryRun 5 (repeated).
fn delete_options(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match n {
            1 => {
                m.insert("gracePeriodSeconds".into(), json!(int(&f)?));
            }
            2 => {
                let mut p = Map::new();
                for (pn, pf) in fields(bytes(&f)?)? {
                    match pn {
                        1 => p.insert("uid".into(), json!(string(&pf)?)),
                        2 => p.insert("resourceVersion".into(), json!(string(&pf)?)),
                        _ => None,
                    };
                }
                m.insert("preconditions".into(), Value::Object(p));
            }
            3 => {
                m.insert("orphanDependents".into(), json!(int(&f)? != 0));
            }
            4 => {
                m.insert("propagationPolicy".into(), json!(string(&f)?));
            }
            5 => push(&mut m, "dryRun", json!(string(&f)?)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

/// Decode a protobuf request body into the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing the k8s protobuf prefix"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match n {
            1 => {
                for (tn, tf) in fields(bytes(&f)?)? {
                    match tn {
                        1 => api_version = string(&tf)?,
                        2 => kind = string(&tf)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes(&f)?,
            _ => {}
        }
    }
    // Every group version accepts meta/v1 DeleteOptions; client-go sends them in protobuf for
    // built-in kinds (Helm's release Secrets, for one).
    if kind == "DeleteOptions" {
        let mut d = delete_options(raw)?;
        d["apiVersion"] = json!(api_version);
        d["kind"] = json!(kind);
        return Ok(d);
    }
    let supported = match api_version.as_str() {
        "v1" => matches!(
            kind.as_str(),
            "ConfigMap" | "Secret" | "Namespace" | "ServiceAccount"
        ),
        "authentication.k8s.io/v1" => kind == "SelfSubjectReview",
        "authorization.k8s.io/v1" => matches!(
            kind.as_str(),
            "SelfSubjectAccessReview" | "SelfSubjectRulesReview"
        ),
        _ => false,
    };
    if !supported {
        return Err(ApiError::unsupported_media(format!(
            "the protobuf encoding of {api_version}/{kind} is not supported; use application/json"
        )));
    }
    let mut obj = object(&kind, raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_delete_options() {
        let mut raw = vec![0x08, 0x00]; // gracePeriodSeconds 0
        raw.extend(field(4, b"Background"));
        raw.extend(field(5, b"All"));
        let mut tm = field(1, b"v1");
        tm.extend(field(2, b"DeleteOptions"));
        let mut body = b"k8s\0".to_vec();
        body.extend(field(1, &tm));
        body.extend(field(2, &raw));
        let v = decode(&body).unwrap();
        assert_eq!(v["propagationPolicy"], "Background");
        assert_eq!(v["dryRun"], json!(["All"]));
        assert_eq!(v["gracePeriodSeconds"], 0);
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_sends() {
        let meta = [
            field(1, b"foo"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let cm = [
            field(1, &meta),
            field(2, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &cm)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "foo", "labels": {"app": "x"}}, "data": {"a": "b"}, "apiVersion": "v1", "kind": "ConfigMap"})
        );
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        assert!(decode(b"nope").is_err());
    }
}
