//! Path elements of a field set and their two textual forms: the FieldsV1
//! key (`f:`, `k:`, `v:`, `i:`) and the human readable form used in conflicts.

use std::fmt;

use serde_json::{Map, Value};

use crate::SsaError;

/// One step of a field path.
///
/// Values inside `Key` and `Value` are kept as canonical JSON text (object
/// keys sorted, compact) so elements are totally ordered and hashable without
/// a custom ordering over `serde_json::Value`. The derive order
/// (field < key < value < index) matches upstream's element ordering.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    Field(String),
    /// Map-list item: (key field name, canonical JSON value), sorted by name.
    Key(Vec<(String, String)>),
    /// Set-list item, canonical JSON.
    Value(String),
    Index(usize),
}

impl PathElement {
    pub fn field(name: impl Into<String>) -> Self {
        PathElement::Field(name.into())
    }

    /// Builds a map-list key element from key field values.
    pub fn key<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Self {
        let mut parts: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), canonical_json(v)))
            .collect();
        parts.sort();
        PathElement::Key(parts)
    }

    pub fn value(v: &Value) -> Self {
        PathElement::Value(canonical_json(v))
    }

    /// FieldsV1 object key for this element.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(parts) => {
                let mut out = String::from("k:{");
                for (i, (k, v)) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    out.push_str(v);
                }
                out.push('}');
                out
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    pub fn from_fields_v1_key(key: &str) -> Result<Self, SsaError> {
        let bad = |why: &str| SsaError::Invalid(format!("invalid fieldsV1 key {key:?}: {why}"));
        let (prefix, rest) = key.split_once(':').ok_or_else(|| bad("missing prefix"))?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => {
                let parsed: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                let obj = parsed
                    .as_object()
                    .ok_or_else(|| bad("key is not an object"))?;
                Ok(PathElement::key(obj.iter().map(|(k, v)| (k.as_str(), v))))
            }
            "v" => {
                let parsed: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                Ok(PathElement::value(&parsed))
            }
            "i" => rest
                .parse::<usize>()
                .map(PathElement::Index)
                .map_err(|e| bad(&e.to_string())),
            _ => Err(bad("unknown prefix")),
        }
    }
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(parts) => {
                let inner: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", inner.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a whole path the way upstream prints it in conflict messages.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Compact JSON with object keys sorted, so equal values have equal text
/// regardless of the insertion order `preserve_order` keeps.
pub fn canonical_json(v: &Value) -> String {
    sorted(v).to_string()
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if let Some(child) = m.get(k) {
                    out.insert(k.clone(), sorted(child));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_round_trip_sorts_fields() {
        let pe =
            PathElement::from_fields_v1_key(r#"k:{"protocol":"TCP","containerPort":80}"#).unwrap();
        assert_eq!(
            pe.to_fields_v1_key(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    }

    #[test]
    fn value_and_index_forms() {
        let v = PathElement::value(&json!("x"));
        assert_eq!(v.to_fields_v1_key(), r#"v:"x""#);
        assert_eq!(v.to_string(), r#"[="x"]"#);
        assert_eq!(
            PathElement::from_fields_v1_key("i:3").unwrap(),
            PathElement::Index(3)
        );
        assert!(PathElement::from_fields_v1_key("z:3").is_err());
        assert!(PathElement::from_fields_v1_key("k:[1]").is_err());
    }
}
