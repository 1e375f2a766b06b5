//! Value validation against a schema, following the upstream validator
//! (kube-openapi's JSON-schema validator plus the apiextensions conversion
//! of its results into field errors, list-type checks and embedded-resource
//! type-meta checks).
//!
//! Two path notions coexist, as upstream:
//! - the validator's *name* (`spec.ports[0].name`, `""` at the root, `.k`
//!   for a map value at the root), which appears inside messages;
//! - the *field* of the resulting error: the caller's prefix joined with
//!   the name; errors that upstream raises as plain errors (composition
//!   failures, numeric range checks) get only the prefix, which is
//!   `<nil>` when there is none, exactly as upstream renders a nil path.

use crate::error::{FieldError, go_float_v, go_json, go_quote};
use crate::formats;
use crate::schema::{AdditionalProperties, Schema, child, index, key};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Accumulated errors plus upstream's "match count" (how many checks
/// applied), used to choose which failing anyOf/oneOf branch to report.
#[derive(Default)]
struct Res {
    errors: Vec<FieldError>,
    count: u64,
}

impl Res {
    fn add(&mut self, e: FieldError) {
        // Upstream drops errors whose message is already present.
        let s = e.to_string();
        if !self.errors.iter().any(|x| x.to_string() == s) {
            self.errors.push(e);
        }
    }
    fn merge(&mut self, other: Res) {
        for e in other.errors {
            self.add(e);
        }
        self.count += other.count;
    }
    fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

struct Ctx<'a> {
    prefix: &'a str,
}

impl Ctx<'_> {
    /// Field of an error whose validator name is `name`.
    fn field(&self, name: &str) -> String {
        if name.is_empty() || name == "." {
            return self.plain_field();
        }
        let n = name.strip_prefix('.').unwrap_or(name);
        child(self.prefix, n)
    }
    /// Field of a plain (non-field) upstream error.
    fn plain_field(&self) -> String {
        if self.prefix.is_empty() {
            "<nil>".to_string()
        } else {
            self.prefix.to_string()
        }
    }
}

/// Validates `obj` against `schema`; `prefix` is prepended to every field
/// (empty for a whole object).
pub(crate) fn validate_value(schema: &Schema, obj: &Value, prefix: &str) -> Vec<FieldError> {
    let ctx = Ctx { prefix };
    let mut res = validate_node(schema, obj, "", &ctx);
    let mut extra = Vec::new();
    list_and_embedded(schema, obj, prefix, true, &mut extra);
    for e in extra {
        res.add(e);
    }
    res.errors
}

/// Only the JSON-schema part (what upstream runs on defaults).
pub(crate) fn validate_openapi(schema: &Schema, obj: &Value, prefix: &str) -> Vec<FieldError> {
    validate_node(schema, obj, "", &Ctx { prefix }).errors
}

fn type_list(s: &Schema) -> Vec<&str> {
    if s.x_int_or_string {
        vec!["integer", "string"]
    } else if s.type_.is_empty() {
        vec![]
    } else {
        vec![s.type_.as_str()]
    }
}

/// The format after upstream strips the ones it does not support.
fn effective_format(s: &Schema) -> &str {
    let t = if s.x_int_or_string {
        ""
    } else {
        s.type_.as_str()
    };
    let f = s.format.as_str();
    let keep = match t {
        "" | "string" => formats::is_known(f),
        "integer" => f == "int32" || f == "int64",
        "number" => f == "float" || f == "double",
        _ => false,
    };
    if keep { f } else { "" }
}

fn is_json_integer(f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0
}

/// Upstream's type name and numeric format of a decoded JSON value.
fn value_type(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.is_f64() => ("number", "float64"),
        Value::Number(_) => ("integer", "int64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

fn invalid_type(ctx: &Ctx, name: &str, type_name: &str, value: &str) -> FieldError {
    FieldError::type_invalid(
        ctx.field(name),
        Value::String(value.to_string()),
        format!(
            "{name} in body must be of type {type_name}: {}",
            go_quote(value)
        ),
    )
}

fn validate_node(s: &Schema, data: &Value, name: &str, ctx: &Ctx) -> Res {
    let mut res = Res::default();
    let types = type_list(s);
    let format = effective_format(s);
    let type_applies = !types.is_empty() || !format.is_empty();

    if data.is_null() {
        if type_applies {
            res.merge(check_type(s, &types, format, data, name, ctx));
        }
        res.merge(check_enum(s, data, name, ctx));
        return res;
    }

    if type_applies {
        res.merge(check_type(s, &types, format, data, name, ctx));
        res.count += 1;
    }
    res.merge(check_composition(s, data, name, ctx));
    res.count += 1;
    if let Value::String(st) = data {
        res.merge(check_string(s, st, name, ctx));
        res.count += 1;
        if !format.is_empty() && formats::is_known(format) {
            if !formats::validate(format, st) {
                res.add(FieldError::type_invalid(
                    ctx.field(name),
                    data.clone(),
                    format!("{name} in body must be of type {format}: {}", go_quote(st)),
                ));
            }
            res.count += 1;
        }
    }
    if data.is_number() {
        res.merge(check_number(s, data, name, ctx));
        res.count += 1;
    }
    if let Value::Array(items) = data {
        res.merge(check_array(s, items, name, ctx));
        res.count += 1;
    }
    res.merge(check_enum(s, data, name, ctx));
    res.count += 1;
    if let Value::Object(m) = data {
        res.merge(check_object(s, m, name, ctx));
        res.count += 1;
    }
    res.count += 1;
    res
}

// The conditions keep upstream's shape so they can be compared side by side.
#[allow(clippy::nonminimal_bool)]
fn check_type(
    s: &Schema,
    types: &[&str],
    format: &str,
    data: &Value,
    name: &str,
    ctx: &Ctx,
) -> Res {
    let mut res = Res::default();
    if data.is_null() {
        if !types.is_empty() && !types.contains(&"null") && !s.nullable {
            res.add(invalid_type(ctx, name, &types.join(","), "null"));
        }
        return res;
    }
    let (sch_type, num_format) = value_type(data);
    let is_float_int = sch_type == "number"
        && data.as_f64().is_some_and(is_json_integer)
        && types.contains(&"integer");
    let is_int_float = sch_type == "integer" && types.contains(&"number");
    let stringish = data.is_string() || data.is_array();
    if !stringish
        && !format.is_empty()
        && !(types.contains(&sch_type) || num_format == format || is_float_int || is_int_float)
    {
        res.add(invalid_type(ctx, name, format, num_format));
        return res;
    }
    if !(types.contains(&"number") || types.contains(&"integer")) && !format.is_empty() && stringish
    {
        res.count += 1;
        return res;
    }
    if !(types.contains(&sch_type) || is_float_int || is_int_float) {
        res.add(invalid_type(ctx, name, &types.join(","), sch_type));
        return res;
    }
    res.count += 1;
    res
}

fn check_composition(s: &Schema, data: &Value, name: &str, ctx: &Ctx) -> Res {
    let mut main = Res::default();
    let plain = |detail: String| {
        FieldError::invalid(ctx.plain_field(), Value::String(String::new()), detail)
    };

    if !s.any_of.is_empty() {
        let mut best: Option<Res> = None;
        let mut first_success: Option<Res> = None;
        for sub in &s.any_of {
            let r = validate_node(sub, data, name, ctx);
            if r.is_valid() {
                best = None;
                first_success = Some(r);
                break;
            }
            if best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if first_success.is_none() {
            main.add(plain(format!(
                "{} must validate at least one schema (anyOf)",
                go_quote(name)
            )));
        }
        if let Some(b) = best {
            main.merge(b);
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }

    if !s.one_of.is_empty() {
        let mut best: Option<Res> = None;
        let mut first_success: Option<Res> = None;
        let mut validated = 0;
        for sub in &s.one_of {
            let r = validate_node(sub, data, name, ctx);
            if r.is_valid() {
                validated += 1;
                best = None;
                if first_success.is_none() {
                    first_success = Some(r);
                }
                continue;
            }
            if validated == 0 && best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if validated != 1 {
            let extra = if validated == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {validated} valid alternatives")
            };
            main.add(plain(format!(
                "{} must validate one and only one schema (oneOf). {extra}",
                go_quote(name)
            )));
            if let Some(b) = best {
                main.merge(b);
            }
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }

    if !s.all_of.is_empty() {
        let mut validated = 0;
        for sub in &s.all_of {
            let r = validate_node(sub, data, name, ctx);
            if r.is_valid() {
                validated += 1;
            }
            main.merge(r);
        }
        if validated != s.all_of.len() {
            let extra = if validated == 0 {
                ". None validated"
            } else {
                ""
            };
            main.add(plain(format!(
                "{} must validate all the schemas (allOf){extra}",
                go_quote(name)
            )));
        }
    }

    if let Some(not) = &s.not
        && validate_node(not, data, name, ctx).is_valid()
    {
        main.add(plain(format!(
            "{} must not validate the schema (not)",
            go_quote(name)
        )));
    }
    main.count += 1;
    main
}

fn check_string(s: &Schema, st: &str, name: &str, ctx: &Ctx) -> Res {
    let mut res = Res::default();
    let len = st.chars().count() as i64;
    if let Some(max) = s.max_length
        && len > max
    {
        res.add(FieldError::too_long(ctx.field(name), max));
        return res;
    }
    if let Some(min) = s.min_length
        && len < min
    {
        res.add(FieldError::invalid(
            ctx.field(name),
            Value::String(st.to_string()),
            format!("{name} in body should be at least {min} chars long"),
        ));
        return res;
    }
    if let (Some(pat), Some(compiled)) = (&s.pattern, &s.pattern_re) {
        let detail = match compiled {
            Ok(re) if re.is_match(st) => None,
            Ok(_) => Some(format!("{name} in body should match '{pat}'")),
            Err(e) => Some(format!(
                "{name} in body should match '{pat}, but pattern is invalid: {e}'"
            )),
        };
        if let Some(d) = detail {
            res.add(FieldError::invalid(
                ctx.field(name),
                Value::String(st.to_string()),
                d,
            ));
        }
    }
    res
}

/// Renders a bound the way upstream does: truncated to an integer when the
/// value is an integer (native int comparison), `%v` of the float otherwise.
fn bound(v: f64, data_is_int: bool) -> String {
    if data_is_int {
        (v as i64).to_string()
    } else {
        go_float_v(v)
    }
}

fn check_number(s: &Schema, data: &Value, name: &str, ctx: &Ctx) -> Res {
    let mut res = Res::default();
    res.count += 1;
    let Some(f) = data.as_f64() else { return res };
    let int_value = data.as_i64();
    let data_is_int = int_value.is_some() || data.is_u64();

    // Upstream checks the value fits the declared numeric type/format and
    // reports a plain (field-less) error when it does not.
    let type_name = if s.x_int_or_string {
        ""
    } else {
        s.type_.as_str()
    };
    let format = effective_format(s);
    let fits = match type_name {
        "integer" => {
            let as_int = if data_is_int {
                int_value
            } else if is_json_integer(f) {
                Some(f as i64)
            } else {
                None
            };
            match (format, as_int) {
                (_, None) => data.is_u64() && format != "int32",
                ("int32", Some(i)) => i32::try_from(i).is_ok(),
                _ => true,
            }
        }
        "number" if format == "float" => f.abs() <= f32::MAX as f64,
        _ => true,
    };
    if !fits {
        let what = if format.is_empty() {
            format!("{type_name} (default format)")
        } else {
            format!("{type_name} with format {format}")
        };
        res.add(FieldError::invalid(
            ctx.plain_field(),
            Value::String(String::new()),
            format!("Checked value must be of type {what} in {name}"),
        ));
    }

    if let Some(factor) = s.multiple_of {
        if factor <= 0.0 {
            res.add(FieldError::invalid(
                ctx.field(name),
                Value::from(factor),
                format!(
                    "factor MultipleOf declared for {name} must be positive: {}",
                    bound(factor, data_is_int)
                ),
            ));
        } else {
            let ok = match int_value {
                Some(i) if factor.fract() == 0.0 && factor <= i64::MAX as f64 => {
                    i % (factor as i64) == 0
                }
                _ => {
                    let mult = if factor < 1.0 {
                        1.0 / factor * f
                    } else {
                        f / factor
                    };
                    is_json_integer(mult)
                }
            };
            if !ok {
                res.add(FieldError::invalid(
                    ctx.field(name),
                    data.clone(),
                    format!(
                        "{name} in body should be a multiple of {}",
                        bound(factor, data_is_int)
                    ),
                ));
            }
        }
    }
    if let Some(min) = s.minimum {
        let bad = if s.exclusive_minimum {
            f <= min
        } else {
            f < min
        };
        if bad {
            let op = if s.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            res.add(FieldError::invalid(
                ctx.field(name),
                data.clone(),
                format!("{name} in body should be {op} {}", bound(min, data_is_int)),
            ));
        }
    }
    if let Some(max) = s.maximum {
        let bad = if s.exclusive_maximum {
            f >= max
        } else {
            f > max
        };
        if bad {
            let op = if s.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            res.add(FieldError::invalid(
                ctx.field(name),
                data.clone(),
                format!("{name} in body should be {op} {}", bound(max, data_is_int)),
            ));
        }
    }
    res
}

fn check_array(s: &Schema, items: &[Value], name: &str, ctx: &Ctx) -> Res {
    let mut res = Res::default();
    if let Some(item_schema) = &s.items {
        for (i, v) in items.iter().enumerate() {
            res.merge(validate_node(item_schema, v, &index(name, i), ctx));
        }
    }
    let size = items.len() as i64;
    if let Some(min) = s.min_items
        && size < min
    {
        res.add(FieldError::invalid(
            ctx.field(name),
            Value::from(size),
            format!("{name} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = s.max_items
        && size > max
    {
        res.add(FieldError::too_many(ctx.field(name), size, max));
    }
    if s.unique_items {
        let mut seen = HashSet::new();
        if !items.iter().all(|v| seen.insert(identity(v))) {
            res.add(FieldError::invalid(
                ctx.field(name),
                Value::String(String::new()),
                format!("{name} in body shouldn't contain duplicates"),
            ));
        }
    }
    res.count += 1;
    res
}

/// Equality key for set semantics: Go keeps int64 and float64 apart and
/// compares compound values by their JSON encoding.
fn identity(v: &Value) -> String {
    let tag = match v {
        Value::Number(n) if n.is_f64() => "f",
        Value::Number(_) => "i",
        _ => "",
    };
    format!("{tag}{}", go_json(v))
}

fn enum_matches(candidate: &Value, data: &Value) -> bool {
    match (candidate, data) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => candidate == data,
    }
}

fn check_enum(s: &Schema, data: &Value, name: &str, ctx: &Ctx) -> Res {
    let mut res = Res::default();
    let Some(values) = &s.enum_ else { return res };
    if values.is_empty() {
        return res;
    }
    // A null value never matches upstream (it cannot be converted to the
    // type of any enum member).
    if !data.is_null() && values.iter().any(|c| !c.is_null() && enum_matches(c, data)) {
        return res;
    }
    let supported: Vec<String> = values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => go_json(other),
        })
        .collect();
    res.add(FieldError::not_supported(
        ctx.field(name),
        data.clone(),
        &supported,
    ));
    res
}

fn check_object(s: &Schema, m: &Map<String, Value>, name: &str, ctx: &Ctx) -> Res {
    let mut res = Res::default();
    let n = m.len() as i64;
    if let Some(min) = s.min_properties
        && n < min
    {
        res.add(FieldError::invalid(
            ctx.field(name),
            Value::from(n),
            format!("{name} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = s.max_properties
        && n > max
    {
        res.add(FieldError::too_many(ctx.field(name), n, max));
    }
    let forbid_additional = matches!(
        s.additional_properties,
        Some(AdditionalProperties::Bool(false))
    );
    for (k, v) in m {
        if let Some(prop) = s.property(k) {
            let sub = if name.is_empty() {
                k.clone()
            } else {
                format!("{name}.{k}")
            };
            res.merge(validate_node(prop, v, &sub, ctx));
        } else if let Some(add) = s.additional_schema() {
            res.merge(validate_node(add, v, &format!("{name}.{k}"), ctx));
        } else if forbid_additional {
            res.add(FieldError::invalid(
                ctx.field(name),
                Value::String(k.clone()),
                format!("{name}.{k} in body is a forbidden property"),
            ));
        }
    }
    for k in &s.required {
        if !m.contains_key(k) {
            res.add(FieldError::required(ctx.field(&format!("{name}.{k}")), ""));
        }
    }
    res
}

/// List-type (`set`/`map`) uniqueness and type-meta of nested embedded
/// resources. `path` uses field-path syntax (map values as `[key]`).
fn list_and_embedded(
    s: &Schema,
    data: &Value,
    path: &str,
    is_root: bool,
    out: &mut Vec<FieldError>,
) {
    match data {
        Value::Object(m) => {
            if s.x_embedded_resource && !is_root {
                check_embedded(path, m, out);
            }
            for (k, v) in m {
                if let Some(prop) = s.property(k) {
                    list_and_embedded(prop, v, &child(path, k), false, out);
                } else if let Some(add) = s.additional_schema() {
                    list_and_embedded(add, v, &key(path, k), false, out);
                }
            }
        }
        Value::Array(items) => {
            match s.x_list_type.as_deref() {
                Some("set") => {
                    for i in duplicate_indices(items.iter().map(identity)) {
                        out.push(FieldError::duplicate(index(path, i), items[i].clone()));
                    }
                }
                Some("map") => check_list_map(s, items, path, out),
                _ => {}
            }
            if let Some(item) = &s.items {
                for (i, v) in items.iter().enumerate() {
                    list_and_embedded(item, v, &index(path, i), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Indices of the second occurrence of each repeated value.
fn duplicate_indices(keys: impl Iterator<Item = String>) -> Vec<usize> {
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (i, k) in keys.enumerate() {
        let c = seen.entry(k).or_insert(0);
        *c += 1;
        if *c == 2 {
            out.push(i);
        }
    }
    out
}

fn check_list_map(s: &Schema, items: &[Value], path: &str, out: &mut Vec<FieldError>) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            out.push(FieldError::invalid(
                index(path, i),
                x.clone(),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    let keys: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key_map = Map::new();
            if let Value::Object(m) = x {
                for k in &s.x_list_map_keys {
                    if let Some(v) = m.get(k) {
                        key_map.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(key_map)
        })
        .collect();
    for i in duplicate_indices(keys.iter().map(identity)) {
        out.push(FieldError::duplicate(index(path, i), keys[i].clone()));
    }
}

fn check_embedded(path: &str, m: &Map<String, Value>, out: &mut Vec<FieldError>) {
    for field in ["apiVersion", "kind"] {
        match m.get(field) {
            None => out.push(FieldError::required(child(path, field), "")),
            Some(Value::String(s)) if s.is_empty() => out.push(FieldError::invalid(
                child(path, field),
                Value::String(String::new()),
                "must not be empty",
            )),
            Some(Value::String(s)) => {
                if field == "apiVersion" && s.matches('/').count() > 1 {
                    out.push(FieldError::invalid(
                        child(path, field),
                        Value::String(s.clone()),
                        format!("unexpected GroupVersion string: {s}"),
                    ));
                }
            }
            Some(other) => out.push(FieldError::invalid(
                child(path, field),
                other.clone(),
                "must be a string",
            )),
        }
    }
}
