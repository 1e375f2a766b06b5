//! Typed view of a JSONSchemaProps (`openAPIV3Schema`) document.
//!
//! Parsing is lenient: malformed keywords are recorded as errors and
//! otherwise ignored, so pruning/defaulting/validation still work on the
//! usable part while `check_structural` reports the malformed part.

use crate::error::FieldError;
use crate::pattern::{self, CompiledPattern};
use serde_json::{Map, Value};

/// `additionalProperties`: either a boolean or a schema.
#[derive(Debug, Clone)]
pub enum AdditionalProperties {
    Bool(bool),
    Schema(Box<Schema>),
}

/// One node of a JSONSchemaProps tree.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// `type`; empty when unset.
    pub type_: String,
    pub format: String,
    pub title: String,
    pub description: String,
    pub nullable: bool,
    pub default: Option<Value>,
    pub enum_: Option<Vec<Value>>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub pattern: Option<String>,
    /// The compiled `pattern`, or why it could not be compiled.
    pub(crate) pattern_re: Option<Result<CompiledPattern, String>>,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub unique_items: bool,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub required: Vec<String>,
    /// Properties in document order.
    pub properties: Vec<(String, Schema)>,
    pub additional_properties: Option<AdditionalProperties>,
    pub items: Option<Box<Schema>>,
    /// `items` given as an array of schemas (not supported by CRDs).
    pub items_is_array: bool,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    /// `x-kubernetes-preserve-unknown-fields` exactly as given (false is
    /// representable because upstream rejects an explicit false).
    pub x_preserve_unknown_fields: Option<bool>,
    pub x_embedded_resource: bool,
    pub x_int_or_string: bool,
    pub x_list_type: Option<String>,
    pub x_list_map_keys: Vec<String>,
    pub x_map_type: Option<String>,
    /// `x-kubernetes-validations`, carried for a CEL evaluator elsewhere.
    pub x_validations: Option<Value>,
    /// Keywords CRDs do not support that were present (`id`, `$ref`, ...).
    pub unsupported: Vec<&'static str>,
    /// Keywords present in the node (non-null), for shape comparisons.
    pub keys: Vec<String>,
}

const UNSUPPORTED: &[&str] = &[
    "id",
    "$ref",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
];

impl Schema {
    /// Parses a schema, returning it together with any shape errors found
    /// (fields relative to `path`).
    pub fn parse_lenient(v: &Value, path: &str) -> (Schema, Vec<FieldError>) {
        let mut errs = Vec::new();
        let s = parse_node(v, path, &mut errs);
        (s, errs)
    }

    /// Parses a schema, failing on any malformed keyword.
    pub fn parse(v: &Value) -> Result<Schema, Vec<FieldError>> {
        let (s, errs) = Self::parse_lenient(v, "");
        if errs.is_empty() { Ok(s) } else { Err(errs) }
    }

    pub fn property(&self, name: &str) -> Option<&Schema> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, s)| s)
    }

    pub fn preserves_unknown_fields(&self) -> bool {
        self.x_preserve_unknown_fields == Some(true)
    }

    /// The schema applying to a map value that is not a named property.
    pub(crate) fn additional_schema(&self) -> Option<&Schema> {
        match &self.additional_properties {
            Some(AdditionalProperties::Schema(s)) => Some(s),
            _ => None,
        }
    }
}

pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn parse_node(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Schema {
    let mut s = Schema::default();
    let Some(m) = v.as_object() else {
        errs.push(FieldError::invalid(path, v.clone(), "must be an object"));
        return s;
    };
    s.keys = m
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    let p = |k: &str| child(path, k);

    s.type_ = get_string(m, "type", path, errs).unwrap_or_default();
    s.format = get_string(m, "format", path, errs).unwrap_or_default();
    s.title = get_string(m, "title", path, errs).unwrap_or_default();
    s.description = get_string(m, "description", path, errs).unwrap_or_default();
    s.nullable = get_bool(m, "nullable", path, errs).unwrap_or(false);
    s.default = m.get("default").cloned();
    match m.get("enum") {
        None => {}
        Some(Value::Array(a)) => s.enum_ = Some(a.clone()),
        Some(other) => errs.push(FieldError::invalid(
            p("enum"),
            other.clone(),
            "must be an array",
        )),
    }
    s.maximum = get_f64(m, "maximum", path, errs);
    s.exclusive_maximum = get_bool(m, "exclusiveMaximum", path, errs).unwrap_or(false);
    s.minimum = get_f64(m, "minimum", path, errs);
    s.exclusive_minimum = get_bool(m, "exclusiveMinimum", path, errs).unwrap_or(false);
    s.multiple_of = get_f64(m, "multipleOf", path, errs);
    s.max_length = get_i64(m, "maxLength", path, errs);
    s.min_length = get_i64(m, "minLength", path, errs);
    s.pattern = get_string(m, "pattern", path, errs);
    if let Some(pat) = &s.pattern {
        s.pattern_re = Some(pattern::compile(pat));
    }
    s.max_items = get_i64(m, "maxItems", path, errs);
    s.min_items = get_i64(m, "minItems", path, errs);
    s.unique_items = get_bool(m, "uniqueItems", path, errs).unwrap_or(false);
    s.max_properties = get_i64(m, "maxProperties", path, errs);
    s.min_properties = get_i64(m, "minProperties", path, errs);
    s.required = get_string_list(m, "required", path, errs);

    match m.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            for (k, sub) in props {
                let sp = key(&p("properties"), k);
                s.properties.push((k.clone(), parse_node(sub, &sp, errs)));
            }
        }
        Some(other) => errs.push(FieldError::invalid(
            p("properties"),
            other.clone(),
            "must be an object",
        )),
    }
    match m.get("additionalProperties") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => s.additional_properties = Some(AdditionalProperties::Bool(*b)),
        Some(sub @ Value::Object(_)) => {
            let node = parse_node(sub, &p("additionalProperties"), errs);
            s.additional_properties = Some(AdditionalProperties::Schema(Box::new(node)));
        }
        Some(other) => errs.push(FieldError::invalid(
            p("additionalProperties"),
            other.clone(),
            "must be a boolean or a schema",
        )),
    }
    match m.get("items") {
        None | Some(Value::Null) => {}
        Some(sub @ Value::Object(_)) => {
            s.items = Some(Box::new(parse_node(sub, &p("items"), errs)));
        }
        Some(Value::Array(list)) => {
            // Reported by check_structural; parsed so nothing is lost.
            s.items_is_array = true;
            if let Some(first) = list.first() {
                s.items = Some(Box::new(parse_node(first, &index(&p("items"), 0), errs)));
            }
        }
        Some(other) => errs.push(FieldError::invalid(
            p("items"),
            other.clone(),
            "must be a schema",
        )),
    }
    s.all_of = get_schema_list(m, "allOf", path, errs);
    s.any_of = get_schema_list(m, "anyOf", path, errs);
    s.one_of = get_schema_list(m, "oneOf", path, errs);
    match m.get("not") {
        None | Some(Value::Null) => {}
        Some(sub) => s.not = Some(Box::new(parse_node(sub, &p("not"), errs))),
    }

    s.x_preserve_unknown_fields = get_bool(m, "x-kubernetes-preserve-unknown-fields", path, errs);
    s.x_embedded_resource =
        get_bool(m, "x-kubernetes-embedded-resource", path, errs).unwrap_or(false);
    s.x_int_or_string = get_bool(m, "x-kubernetes-int-or-string", path, errs).unwrap_or(false);
    s.x_list_type = get_string(m, "x-kubernetes-list-type", path, errs);
    s.x_list_map_keys = get_string_list(m, "x-kubernetes-list-map-keys", path, errs);
    s.x_map_type = get_string(m, "x-kubernetes-map-type", path, errs);
    match m.get("x-kubernetes-validations") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Array(_)) => s.x_validations = Some(v.clone()),
        Some(other) => errs.push(FieldError::invalid(
            p("x-kubernetes-validations"),
            other.clone(),
            "must be an array",
        )),
    }
    for k in UNSUPPORTED {
        if m.get(*k).is_some_and(|v| !v.is_null()) {
            s.unsupported.push(k);
        }
    }
    s
}

fn get_string(
    m: &Map<String, Value>,
    k: &str,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    match m.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errs.push(FieldError::invalid(
                child(path, k),
                other.clone(),
                "must be a string",
            ));
            None
        }
    }
}

fn get_bool(
    m: &Map<String, Value>,
    k: &str,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<bool> {
    match m.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            errs.push(FieldError::invalid(
                child(path, k),
                other.clone(),
                "must be a boolean",
            ));
            None
        }
    }
}

fn get_f64(m: &Map<String, Value>, k: &str, path: &str, errs: &mut Vec<FieldError>) -> Option<f64> {
    match m.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => {
            errs.push(FieldError::invalid(
                child(path, k),
                other.clone(),
                "must be a number",
            ));
            None
        }
    }
}

fn get_i64(m: &Map<String, Value>, k: &str, path: &str, errs: &mut Vec<FieldError>) -> Option<i64> {
    match m.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(other) => {
            errs.push(FieldError::invalid(
                child(path, k),
                other.clone(),
                "must be an integer",
            ));
            None
        }
    }
}

fn get_string_list(
    m: &Map<String, Value>,
    k: &str,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<String> {
    match m.get(k) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            errs.push(FieldError::invalid(
                child(path, k),
                other.clone(),
                "must be a list of strings",
            ));
            Vec::new()
        }
    }
}

fn get_schema_list(
    m: &Map<String, Value>,
    k: &str,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<Schema> {
    match m.get(k) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| parse_node(x, &index(&child(path, k), i), errs))
            .collect(),
        Some(other) => {
            errs.push(FieldError::invalid(
                child(path, k),
                other.clone(),
                "must be an array",
            ));
            Vec::new()
        }
    }
}
