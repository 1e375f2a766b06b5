//! Field errors shaped like Kubernetes' `field.Error`, including its exact
//! rendering, because clients (kubectl, e2e tests) match on these strings.

use serde_json::Value;
use std::fmt::Write as _;

pub const REASON_NOT_FOUND: &str = "FieldValueNotFound";
pub const REASON_REQUIRED: &str = "FieldValueRequired";
pub const REASON_DUPLICATE: &str = "FieldValueDuplicate";
pub const REASON_INVALID: &str = "FieldValueInvalid";
pub const REASON_NOT_SUPPORTED: &str = "FieldValueNotSupported";
pub const REASON_FORBIDDEN: &str = "FieldValueForbidden";
pub const REASON_TOO_LONG: &str = "FieldValueTooLong";
pub const REASON_TOO_MANY: &str = "FieldValueTooMany";
pub const REASON_INTERNAL: &str = "InternalError";
pub const REASON_TYPE_INVALID: &str = "FieldValueTypeInvalid";

/// A validation error on one field.
///
/// `reason` is the Status cause type, `field` the path (`spec.ports[0].name`),
/// `bad_value` the offending value (`None` when upstream omits it) and
/// `detail` the human readable explanation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct FieldError {
    pub reason: &'static str,
    pub field: String,
    pub bad_value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(REASON_REQUIRED, field, None, detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(REASON_FORBIDDEN, field, None, detail)
    }
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(REASON_INVALID, field, Some(value), detail)
    }
    pub fn type_invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(REASON_TYPE_INVALID, field, Some(value), detail)
    }
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(REASON_DUPLICATE, field, Some(value), "")
    }
    /// `supported values: "a", "b"`; every entry is quoted like Go's `%q`.
    pub fn not_supported(field: impl Into<String>, value: Value, valid: &[String]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(REASON_NOT_SUPPORTED, field, Some(value), detail)
    }
    pub fn too_long(field: impl Into<String>, max: i64) -> Self {
        let detail = if max >= 0 {
            format!(
                "may not be more than {} {}",
                max,
                if max == 1 { "byte" } else { "bytes" }
            )
        } else {
            "value is too long".to_string()
        };
        Self::new(REASON_TOO_LONG, field, None, detail)
    }
    pub fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Self {
        let detail = if max >= 0 {
            format!(
                "must have at most {} {}",
                max,
                if max == 1 { "item" } else { "items" }
            )
        } else {
            "has too many items".to_string()
        };
        let value = (actual >= 0).then(|| Value::from(actual));
        Self::new(REASON_TOO_MANY, field, value, detail)
    }

    fn new(
        reason: &'static str,
        field: impl Into<String>,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            reason,
            field: field.into(),
            bad_value,
            detail: detail.into(),
        }
    }

    /// Human name of the error type (`Invalid value`, `Required value`, ...).
    pub fn type_string(&self) -> &'static str {
        match self.reason {
            REASON_NOT_FOUND => "Not found",
            REASON_REQUIRED => "Required value",
            REASON_DUPLICATE => "Duplicate value",
            REASON_INVALID | REASON_TYPE_INVALID => "Invalid value",
            REASON_NOT_SUPPORTED => "Unsupported value",
            REASON_FORBIDDEN => "Forbidden",
            REASON_TOO_LONG => "Too long",
            REASON_TOO_MANY => "Too many",
            REASON_INTERNAL => "Internal error",
            _ => "Invalid value",
        }
    }

    /// The message without the field prefix: what Status causes carry.
    pub fn body(&self) -> String {
        let mut s = String::from(self.type_string());
        // These kinds never print their value upstream, whatever it is.
        let omit = matches!(
            self.reason,
            REASON_REQUIRED | REASON_FORBIDDEN | REASON_TOO_LONG | REASON_INTERNAL
        );
        if !omit && let Some(v) = &self.bad_value {
            s.push_str(": ");
            s.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    fn render(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

/// Renders a bad value the way `field.Error.ErrorBody` does: scalars with
/// `%v`/`%q`, everything else as Go's `json.Marshal` output.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number_v(n),
        _ => go_json(v),
    }
}

/// Go's `%v` for int64/float64 values.
pub(crate) fn go_number_v(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float_v(n.as_f64().unwrap_or(0.0))
    }
}

/// Go's `%v` on a float64, i.e. `%g` with shortest precision: exponent form
/// when the decimal exponent is < -4 or >= 6 (so 1e6 prints as `1e+06`).
pub(crate) fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let (mantissa, exp) = shortest_parts(f);
    if !(-4..6).contains(&exp) {
        exp_form(&mantissa, exp, true)
    } else {
        plain_form(f)
    }
}

/// Go's `json.Marshal` formatting of a float64.
fn go_json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (mantissa, exp) = shortest_parts(f);
        exp_form(&mantissa, exp, false)
    } else {
        plain_form(f)
    }
}

/// Shortest round-trip digits and the decimal exponent, via Rust's `{:e}`.
fn shortest_parts(f: f64) -> (String, i32) {
    let s = format!("{:e}", f);
    match s.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

fn exp_form(mantissa: &str, exp: i32, two_digit_exp: bool) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    let e = exp.abs();
    if two_digit_exp {
        format!("{mantissa}e{sign}{e:02}")
    } else {
        format!("{mantissa}e{sign}{e}")
    }
}

fn plain_form(f: f64) -> String {
    // Rust's Display is shortest-round-trip without exponent, which is what
    // Go prints in this range; only the "-0"/"x.0" spellings differ.
    let s = format!("{}", f);
    if s == "-0" { "0".into() } else { s }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{feff}' => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `json.Marshal` of a decoded JSON value: map keys sorted, HTML
/// characters escaped, Go float formatting.
pub(crate) fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_f64() {
                out.push_str(&go_json_float(n.as_f64().unwrap_or(0.0)));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => write_go_json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(k, out);
                out.push(':');
                if let Some(x) = m.get(*k) {
                    write_go_json(x, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_upstream() {
        let e = FieldError::type_invalid(
            "spec.replicas",
            json!("string"),
            "spec.replicas in body must be of type integer: \"string\"",
        );
        assert_eq!(
            e.to_string(),
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        );
        let e = FieldError::not_supported("spec.mode", json!("x"), &["a".into(), "b".into()]);
        assert_eq!(
            e.to_string(),
            r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#
        );
        assert_eq!(
            FieldError::required("spec.name", "").to_string(),
            "spec.name: Required value"
        );
        assert_eq!(
            FieldError::too_many("spec.ports", 3, 2).to_string(),
            "spec.ports: Too many: 3: must have at most 2 items"
        );
        assert_eq!(
            FieldError::too_long("spec.name", 5).to_string(),
            "spec.name: Too long: may not be more than 5 bytes"
        );
        assert_eq!(
            FieldError::duplicate("spec.ports[1]", json!({"b": 1, "a": "<x>"})).to_string(),
            r#"spec.ports[1]: Duplicate value: {"a":"\u003cx\u003e","b":1}"#
        );
        assert_eq!(
            FieldError::invalid("x", Value::Null, "d").to_string(),
            "x: Invalid value: null: d"
        );
    }

    #[test]
    fn go_floats() {
        assert_eq!(go_float_v(1.5), "1.5");
        assert_eq!(go_float_v(1.0), "1");
        assert_eq!(go_float_v(1e21), "1e+21");
        assert_eq!(go_float_v(1e6), "1e+06");
        assert_eq!(go_float_v(123456.0), "123456");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_json(&json!(1.0)), "1");
        assert_eq!(go_json(&json!(1e-7)), "1e-7");
        assert_eq!(go_quote("a\"b\n"), r#""a\"b\n""#);
    }
}
