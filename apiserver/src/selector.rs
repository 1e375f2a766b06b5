//! Label and field selectors, as list and watch requests give them.

use serde_json::Value;

use crate::error::ApiError;
use crate::registry::{Flavor, Resource};

#[derive(Clone, Debug, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let bad = |m: String| ApiError::bad_request(format!("unable to parse requirement: {m}"));
        let mut reqs = Vec::new();
        for term in split_top(s) {
            let r = if let Some(k) = term.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some((k, rest)) = split_set_op(&term, " notin ") {
                Req::NotIn(
                    k,
                    parse_set(&rest).ok_or_else(|| bad(format!("bad set in {term:?}")))?,
                )
            } else if let Some((k, rest)) = split_set_op(&term, " in ") {
                Req::In(
                    k,
                    parse_set(&rest).ok_or_else(|| bad(format!("bad set in {term:?}")))?,
                )
            } else if let Some((k, v)) = term.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else {
                Req::Exists(term.clone())
            };
            let (key, values): (&str, Vec<&String>) = match &r {
                Req::Eq(k, v) | Req::NotEq(k, v) => (k, vec![v]),
                Req::In(k, vs) | Req::NotIn(k, vs) => (k, vs.iter().collect()),
                Req::Exists(k) | Req::NotExists(k) => (k, vec![]),
            };
            if !valid_key(key) {
                return Err(bad(format!("invalid label key {key:?}")));
            }
            if let Some(v) = values.iter().find(|v| !valid_value(v)) {
                return Err(bad(format!("invalid label value {v:?}")));
            }
            reqs.push(r);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_set_op(term: &str, op: &str) -> Option<(String, String)> {
    let i = term.find(op)?;
    Some((
        term[..i].trim().to_string(),
        term[i + op.len()..].trim().to_string(),
    ))
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

#[derive(Clone, Debug, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str, res: &Resource) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        for term in split_top(s) {
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let k = k.trim().to_string();
            if !supported_field(res, &k) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            out.push((k, eq, v.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The single name a selector pins (`metadata.name=x`), which lets a get replace a list.
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, eq, _)| k == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let actual = field_value(res, obj, k);
            (actual == *v) == *eq
        })
    }
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn supported_field(res: &Resource, k: &str) -> bool {
    if k == "metadata.name" || k == "metadata.namespace" {
        return true;
    }
    match res.flavor {
        Flavor::CoreEvent => EVENT_FIELDS.contains(&k),
        Flavor::EventsV1 => {
            k == "reason"
                || k == "type"
                || k.strip_prefix("regarding.")
                    .is_some_and(|f| EVENT_FIELDS.contains(&format!("involvedObject.{f}").as_str()))
        }
        Flavor::Secret => k == "type",
        Flavor::Namespace => k == "status.phase",
        _ => res
            .selectable_fields
            .iter()
            .any(|f| f.trim_start_matches('.') == k),
    }
}

/// The string value of a selectable field; absent fields compare as "".
pub fn field_value(res: &Resource, obj: &Value, k: &str) -> String {
    let path: String = match (res.flavor, k) {
        (Flavor::CoreEvent, "source") => "source.component".into(),
        (Flavor::EventsV1, f) if f.starts_with("regarding.") => f.to_string(),
        _ => k.to_string(),
    };
    let mut cur = obj;
    for p in path.split('.') {
        match cur.get(p) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selector_operators() {
        let s = LabelSelector::parse("a in (x,y),!b,c!=z,d").unwrap();
        assert!(s.matches(Some(&labels(json!({"a":"x","d":""})))));
        assert!(!s.matches(Some(&labels(json!({"a":"x","b":"1","d":""})))));
        assert!(!s.matches(Some(&labels(json!({"a":"q","d":""})))));
        assert!(!s.matches(Some(&labels(json!({"a":"x","c":"z","d":""})))));
        let n = LabelSelector::parse("env notin (prod), tier==web").unwrap();
        assert!(n.matches(Some(&labels(json!({"tier":"web"})))));
        assert!(!n.matches(Some(&labels(json!({"tier":"web","env":"prod"})))));
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
    }
}
