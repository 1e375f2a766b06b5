//! Static checks of a CRD schema: the structural-schema rules, validity
//! and prunedness of defaults, and the apiextensions restrictions on
//! keywords and Kubernetes vendor extensions.

use crate::error::FieldError;
use crate::prune::prune_value;
use crate::schema::{AdditionalProperties, Schema, child, index, key};
use crate::validate::validate_openapi;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// All checks, in upstream's grouping: shape errors, structural errors
/// (sorted by message), default errors (only when structural), then the
/// keyword restrictions.
pub(crate) fn check(raw: &Value, path: &str) -> Vec<FieldError> {
    let (s, mut errs) = Schema::parse_lenient(raw, path);

    let mut structural = Vec::new();
    invariants(&s, Level::Root, path, &mut structural);
    vv_complete(&s, &s, path, path, &mut structural);
    structural.sort_by_key(|e| e.to_string());
    structural.dedup();

    if structural.is_empty() {
        defaults(&s, path, false, true, &mut errs);
    } else {
        errs.extend(structural);
    }

    if s.nullable {
        errs.push(FieldError::forbidden(
            child(path, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let ssv = Ssv {
        allow_defaults: true,
        disallow_reason: String::new(),
        inside_meta: false,
    };
    keywords(&s, path, &ssv, true, &mut errs);
    errs
}

fn is_int_or_string_any_of(list: &[Schema]) -> bool {
    let only_type = |s: &Schema, t: &str| s.type_ == t && s.keys.len() == 1;
    list.len() == 2 && only_type(&list[0], "integer") && only_type(&list[1], "string")
}

fn invariants(s: &Schema, lvl: Level, p: &str, out: &mut Vec<FieldError>) {
    if s.type_ == "array" && s.items.is_none() {
        out.push(FieldError::required(child(p, "items"), "must be specified"));
    }
    if let Some(items) = &s.items {
        invariants(items, Level::Item, &child(p, "items"), out);
    }
    for (k, v) in &s.properties {
        invariants(v, Level::Field, &key(&child(p, "properties"), k), out);
    }
    if let Some(ap) = &s.additional_properties {
        if lvl == Level::Root {
            out.push(FieldError::forbidden(
                child(p, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let AdditionalProperties::Schema(sub) = ap {
            invariants(sub, Level::Field, &child(p, "additionalProperties"), out);
        }
    }

    let preserve = s.preserves_unknown_fields();
    if s.x_int_or_string && preserve {
        out.push(FieldError::invalid(
            child(p, "x-kubernetes-preserve-unknown-fields"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if s.x_int_or_string && s.x_embedded_resource {
        out.push(FieldError::invalid(
            child(p, "x-kubernetes-embedded-resource"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }

    let skip_any_of = is_int_or_string_any_of(&s.any_of);
    let skip_first_all_of_any_of = s
        .all_of
        .first()
        .is_some_and(|a| is_int_or_string_any_of(&a.any_of));
    value_validation(s, skip_any_of, skip_first_all_of_any_of, p, out);

    let check_metadata = lvl == Level::Root || s.x_embedded_resource;
    let type_path = child(p, "type");
    if s.x_embedded_resource && s.type_ != "object" {
        let msg = "must be object if x-kubernetes-embedded-resource is true";
        if s.type_.is_empty() {
            out.push(FieldError::required(type_path.clone(), msg));
        } else {
            out.push(FieldError::invalid(
                type_path.clone(),
                Value::String(s.type_.clone()),
                msg,
            ));
        }
    } else if s.type_.is_empty() && !s.x_int_or_string && !preserve {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(FieldError::required(type_path.clone(), msg));
    }
    if s.x_embedded_resource && s.additional_properties.is_some() {
        out.push(FieldError::forbidden(
            child(p, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !s.type_.is_empty() && s.type_ != "object" {
        out.push(FieldError::invalid(
            type_path,
            Value::String(s.type_.clone()),
            "must be object at the root",
        ));
    }
    if check_metadata {
        for name in ["kind", "apiVersion"] {
            if let Some(prop) = s.property(name)
                && prop.type_ != "string"
            {
                out.push(FieldError::invalid(
                    child(&key(&child(p, "properties"), name), "type"),
                    Value::String(prop.type_.clone()),
                    "must be string",
                ));
            }
        }
    }
    if let Some(md) = s.property("metadata") {
        let mp = key(&child(p, "properties"), "metadata");
        if check_metadata && md.type_ != "object" {
            out.push(FieldError::invalid(
                child(&mp, "type"),
                Value::String(md.type_.clone()),
                "must be object",
            ));
        }
        if lvl == Level::Root && !metadata_only_names(md) {
            out.push(FieldError::forbidden(
                mp,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if s.x_embedded_resource && !preserve && s.properties.is_empty() {
        out.push(FieldError::required(
            child(p, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// Root metadata may only carry `type`, a default (rejected elsewhere) and
/// properties restricted to `name`/`generateName`; zero values count as
/// unset, as upstream compares against an empty schema.
fn metadata_only_names(md: &Schema) -> bool {
    let names_only = md
        .properties
        .iter()
        .all(|(k, _)| k == "name" || k == "generateName");
    md.keys.iter().all(|k| match k.as_str() {
        "type" | "default" => true,
        "properties" => names_only,
        "nullable" => !md.nullable,
        "exclusiveMinimum" => !md.exclusive_minimum,
        "exclusiveMaximum" => !md.exclusive_maximum,
        "uniqueItems" => !md.unique_items,
        "x-kubernetes-embedded-resource" => !md.x_embedded_resource,
        "x-kubernetes-int-or-string" => !md.x_int_or_string,
        "x-kubernetes-preserve-unknown-fields" => !md.preserves_unknown_fields(),
        "description" => md.description.is_empty(),
        "title" => md.title.is_empty(),
        "format" => md.format.is_empty(),
        _ => false,
    })
}

fn value_validation(
    v: &Schema,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    p: &str,
    out: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, a) in v.any_of.iter().enumerate() {
            nested(a, false, &index(&child(p, "anyOf"), i), out);
        }
    }
    for (i, a) in v.all_of.iter().enumerate() {
        nested(
            a,
            skip_first_all_of_any_of && i == 0,
            &index(&child(p, "allOf"), i),
            out,
        );
    }
    for (i, a) in v.one_of.iter().enumerate() {
        nested(a, false, &index(&child(p, "oneOf"), i), out);
    }
    if let Some(n) = &v.not {
        nested(n, false, &child(p, "not"), out);
    }
    if let (Some(pat), Some(Err(e))) = (&v.pattern, &v.pattern_re) {
        out.push(FieldError::invalid(
            child(p, "pattern"),
            Value::String(pat.clone()),
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
}

/// A schema reached through allOf/anyOf/oneOf/not may only restrict
/// values; everything that shapes the data must live in the structural part.
fn nested(v: &Schema, skip_any_of: bool, p: &str, out: &mut Vec<FieldError>) {
    value_validation(v, skip_any_of, false, p, out);
    if let Some(items) = &v.items {
        nested(items, false, &child(p, "items"), out);
    }
    for (k, prop) in &v.properties {
        nested(prop, false, &key(&child(p, "properties"), k), out);
    }
    let mut forbid = |cond: bool, field: &str, msg: &str| {
        if cond {
            out.push(FieldError::forbidden(child(p, field), msg));
        }
    };
    forbid(
        !v.type_.is_empty(),
        "type",
        "must be empty to be structural",
    );
    forbid(
        v.additional_properties.is_some(),
        "additionalProperties",
        "must be undefined to be structural",
    );
    forbid(
        v.default.is_some(),
        "default",
        "must be undefined to be structural",
    );
    forbid(
        !v.title.is_empty(),
        "title",
        "must be empty to be structural",
    );
    forbid(
        !v.description.is_empty(),
        "description",
        "must be empty to be structural",
    );
    forbid(v.nullable, "nullable", "must be false to be structural");
    forbid(
        v.preserves_unknown_fields(),
        "x-kubernetes-preserve-unknown-fields",
        "must be false to be structural",
    );
    forbid(
        v.x_embedded_resource,
        "x-kubernetes-embedded-resource",
        "must be false to be structural",
    );
    forbid(
        v.x_int_or_string,
        "x-kubernetes-int-or-string",
        "must be false to be structural",
    );
    forbid(
        !v.x_list_map_keys.is_empty(),
        "x-kubernetes-list-map-keys",
        "must be empty to be structural",
    );
    forbid(
        v.x_list_type.is_some(),
        "x-kubernetes-list-type",
        "must be undefined to be structural",
    );
    forbid(
        v.x_map_type.is_some(),
        "x-kubernetes-map-type",
        "must be undefined to be structural",
    );
    let has_rules = v
        .x_validations
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    forbid(
        has_rules,
        "x-kubernetes-validations",
        "must be empty to be structural",
    );
    if v.property("metadata").is_some() {
        out.push(FieldError::forbidden(
            key(&child(p, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Every property/items mentioned in a value validation must exist in the
/// structural part. Like upstream, this starts at the root's validations.
fn vv_complete(v: &Schema, s: &Schema, sp: &str, vp: &str, out: &mut Vec<FieldError>) {
    if let Some(n) = &v.not {
        nested_complete(n, Some(s), sp, &child(vp, "not"), out);
    }
    for (name, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, a) in list.iter().enumerate() {
            nested_complete(a, Some(s), sp, &index(&child(vp, name), i), out);
        }
    }
}

fn nested_complete(v: &Schema, s: Option<&Schema>, sp: &str, vp: &str, out: &mut Vec<FieldError>) {
    let Some(s) = s else {
        out.push(FieldError::required(
            sp,
            format!("because it is defined in {vp}"),
        ));
        return;
    };
    vv_complete(v, s, sp, vp, out);
    if let Some(vi) = &v.items {
        nested_complete(
            vi,
            s.items.as_deref(),
            &child(sp, "items"),
            &child(vp, "items"),
            out,
        );
    }
    for (k, vf) in &v.properties {
        let skp = key(&child(sp, "properties"), k);
        let vkp = key(&child(vp, "properties"), k);
        match s.property(k) {
            Some(sf) => nested_complete(vf, Some(sf), &skp, &vkp, out),
            None => out.push(FieldError::required(
                skp,
                format!("because it is defined in {vkp}"),
            )),
        }
    }
}

/// Defaults must validate against their schema and contain no fields the
/// schema would prune.
fn defaults(s: &Schema, p: &str, inside_meta: bool, is_root: bool, out: &mut Vec<FieldError>) {
    let embedded = s.x_embedded_resource || is_root;
    let inside_meta = inside_meta && !embedded;
    if let Some(d) = &s.default {
        let dp = child(p, "default");
        if !inside_meta {
            let mut pruned = d.clone();
            prune_value(s, &mut pruned, s.x_embedded_resource);
            if &pruned != d {
                out.push(FieldError::invalid(
                    dp.clone(),
                    d.clone(),
                    "must not have unknown fields",
                ));
            }
        }
        out.extend(validate_openapi(s, d, &dp));
    }
    if let Some(items) = &s.items {
        defaults(items, &child(p, "items"), inside_meta, false, out);
    }
    for (k, prop) in &s.properties {
        let sub_meta =
            inside_meta || (embedded && matches!(k.as_str(), "metadata" | "apiVersion" | "kind"));
        defaults(prop, &key(&child(p, "properties"), k), sub_meta, false, out);
    }
}

/// Keyword-level restrictions (apiextensions validation of the schema).
#[derive(Clone)]
struct Ssv {
    allow_defaults: bool,
    disallow_reason: String,
    inside_meta: bool,
}

const V3_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

fn keywords(s: &Schema, p: &str, ssv: &Ssv, is_root: bool, out: &mut Vec<FieldError>) {
    let c = |f: &str| child(p, f);
    if !s.type_.is_empty() && !V3_TYPES.contains(&s.type_.as_str()) {
        let supported: Vec<String> = V3_TYPES.iter().map(|t| t.to_string()).collect();
        out.push(FieldError::not_supported(
            c("type"),
            Value::String(s.type_.clone()),
            &supported,
        ));
    }
    if s.default.is_some() && !ssv.allow_defaults {
        let mut detail = "must not be set".to_string();
        if !ssv.disallow_reason.is_empty() {
            detail.push(' ');
            detail.push_str(&ssv.disallow_reason);
        }
        out.push(FieldError::forbidden(c("default"), detail));
    }
    for kw in &s.unsupported {
        out.push(FieldError::forbidden(
            c(kw),
            format!("{kw} is not supported"),
        ));
    }
    if s.type_ == "null" {
        out.push(FieldError::forbidden(
            c("type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if s.items_is_array {
        out.push(FieldError::forbidden(
            c("items"),
            "items must be a schema object and not an array",
        ));
    }
    if ssv.inside_meta && s.x_embedded_resource {
        out.push(FieldError::forbidden(
            c("x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if s.unique_items {
        out.push(FieldError::forbidden(
            c("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }

    if let Some(ap) = &s.additional_properties {
        let restrictive = !matches!(ap, AdditionalProperties::Bool(true));
        if !s.properties.is_empty() && restrictive {
            out.push(FieldError::forbidden(
                c("additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let AdditionalProperties::Schema(sub) = ap {
            let mut sub_ssv = ssv.clone();
            if ssv.inside_meta {
                sub_ssv.allow_defaults = false;
                sub_ssv.disallow_reason =
                    "inside additionalProperties applying to object metadata".into();
            }
            keywords(sub, &c("additionalProperties"), &sub_ssv, false, out);
        }
    }
    for (k, prop) in &s.properties {
        let mut sub_ssv = ssv.clone();
        if (is_root || s.x_embedded_resource)
            && matches!(k.as_str(), "metadata" | "kind" | "apiVersion")
        {
            sub_ssv.inside_meta = true;
            if is_root {
                sub_ssv.allow_defaults = false;
                sub_ssv.disallow_reason = format!("in top-level {k}");
            }
        }
        keywords(prop, &key(&c("properties"), k), &sub_ssv, false, out);
    }
    if let Some(n) = &s.not {
        keywords(n, &c("not"), ssv, false, out);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("oneOf", &s.one_of),
        ("anyOf", &s.any_of),
    ] {
        for (i, sub) in list.iter().enumerate() {
            keywords(sub, &index(&c(name), i), ssv, false, out);
        }
    }
    if let Some(items) = &s.items {
        let ip = if s.items_is_array {
            index(&c("items"), 0)
        } else {
            c("items")
        };
        keywords(items, &ip, ssv, false, out);
    }

    if s.x_preserve_unknown_fields == Some(false) {
        out.push(FieldError::invalid(
            c("x-kubernetes-preserve-unknown-fields"),
            Value::Bool(false),
            "must be true or undefined",
        ));
    }
    list_and_map_types(s, p, out);
    validation_rules(s, p, out);
}

fn list_and_map_types(s: &Schema, p: &str, out: &mut Vec<FieldError>) {
    let c = |f: &str| child(p, f);
    let type_err = |msg: &str| {
        if s.type_.is_empty() {
            FieldError::required(c("type"), msg)
        } else {
            FieldError::invalid(c("type"), Value::String(s.type_.clone()), msg)
        }
    };
    if let Some(mt) = &s.x_map_type {
        if s.type_ != "object" {
            out.push(type_err(
                "must be object if x-kubernetes-map-type is specified",
            ));
        }
        if mt != "atomic" && mt != "granular" {
            out.push(FieldError::not_supported(
                c("x-kubernetes-map-type"),
                Value::String(mt.clone()),
                &["atomic".into(), "granular".into()],
            ));
        }
    }
    if let Some(lt) = &s.x_list_type {
        if s.type_ != "array" {
            out.push(type_err(
                "must be array if x-kubernetes-list-type is specified",
            ));
        } else if lt == "set"
            && let Some(item) = &s.items
        {
            match item.type_.as_str() {
                "array" if item.x_list_type.as_deref().is_some_and(|t| t != "atomic") => {
                    out.push(FieldError::invalid(
                        child(&c("items"), "x-kubernetes-list-type"),
                        Value::String(item.x_list_type.clone().unwrap_or_default()),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                "object" if item.x_map_type.as_deref() != Some("atomic") => {
                    out.push(FieldError::invalid(
                        child(&c("items"), "x-kubernetes-map-type"),
                        item.x_list_type.clone().map_or(Value::Null, Value::String),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                _ => {}
            }
        }
        if !matches!(lt.as_str(), "atomic" | "set" | "map") {
            out.push(FieldError::not_supported(
                c("x-kubernetes-list-type"),
                Value::String(lt.clone()),
                &["atomic".into(), "set".into(), "map".into()],
            ));
        }
    }
    if !s.x_list_map_keys.is_empty() {
        match &s.x_list_type {
            None => out.push(FieldError::required(
                c("x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some(lt) if lt != "map" => out.push(FieldError::invalid(
                c("x-kubernetes-list-type"),
                Value::String(lt.clone()),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            _ => {}
        }
    }
    let keys_value = || {
        Value::Array(
            s.x_list_map_keys
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        )
    };
    if s.x_list_type.as_deref() == Some("map") {
        if s.x_list_map_keys.is_empty() {
            out.push(FieldError::required(
                c("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match &s.items {
            None => out.push(FieldError::required(
                c("items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(item) if item.type_ != "object" => out.push(FieldError::invalid(
                child(&c("items"), "type"),
                Value::String(item.type_.clone()),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(item) => {
                let mut seen = Vec::new();
                for k in &s.x_list_map_keys {
                    match item.property(k) {
                        Some(ks) if ks.type_ == "array" || ks.type_ == "object" => out.push(FieldError::invalid(
                            child(&key(&child(&c("items"), "properties"), k), "type"),
                            Value::String(item.type_.clone()),
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        )),
                        Some(_) => {}
                        None => out.push(FieldError::invalid(
                            c("x-kubernetes-list-map-keys"),
                            keys_value(),
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(&k) {
                        out.push(FieldError::invalid(
                            c("x-kubernetes-list-map-keys"),
                            keys_value(),
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    // Keys of set/map lists must be present in every element.
    if let (Some(lt @ ("set" | "map")), Some(item)) = (s.x_list_type.as_deref(), &s.items) {
        if item.nullable {
            out.push(FieldError::forbidden(
                child(&c("items"), "nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            for k in &s.x_list_map_keys {
                let Some(ks) = item.property(k) else { continue };
                let kp = key(&child(&c("items"), "properties"), k);
                if !item.required.contains(k) && ks.default.is_none() {
                    out.push(FieldError::required(
                        child(&kp, "default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if ks.nullable {
                    out.push(FieldError::forbidden(
                        child(&kp, "nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

/// Shape checks of `x-kubernetes-validations` rules; compiling and running
/// the CEL expressions is left to the CEL component.
fn validation_rules(s: &Schema, p: &str, out: &mut Vec<FieldError>) {
    let Some(rules) = s.x_validations.as_ref().and_then(Value::as_array) else {
        return;
    };
    let has_newline = |t: &str| t.contains('\n') || t.contains('\r');
    for (i, rule) in rules.iter().enumerate() {
        let rp = index(&child(p, "x-kubernetes-validations"), i);
        let Some(r) = rule.as_object() else {
            out.push(FieldError::invalid(rp, rule.clone(), "must be an object"));
            continue;
        };
        let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let (text, msg, msg_expr, fpath) = (
            get("rule"),
            get("message"),
            get("messageExpression"),
            get("fieldPath"),
        );
        if text.trim().is_empty() {
            out.push(FieldError::required(
                child(&rp, "rule"),
                "rule is not specified",
            ));
        } else if !msg.is_empty() && msg.trim().is_empty() {
            out.push(FieldError::invalid(
                child(&rp, "message"),
                Value::String(msg.into()),
                "must be non-empty if specified",
            ));
        } else if has_newline(msg.trim()) {
            out.push(FieldError::invalid(
                child(&rp, "message"),
                Value::String(msg.into()),
                "must not contain line breaks",
            ));
        } else if has_newline(text.trim()) && msg.trim().is_empty() {
            out.push(FieldError::required(
                child(&rp, "message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if !msg_expr.is_empty() && msg_expr.trim().is_empty() {
            out.push(FieldError::required(
                child(&rp, "messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = r.get("reason").and_then(Value::as_str) {
            let supported = [
                "FieldValueDuplicate",
                "FieldValueForbidden",
                "FieldValueInvalid",
                "FieldValueRequired",
            ];
            if !supported.contains(&reason) {
                let list: Vec<String> = supported.iter().map(|x| x.to_string()).collect();
                out.push(FieldError::not_supported(
                    child(&rp, "reason"),
                    Value::String(reason.into()),
                    &list,
                ));
            }
        }
        if !fpath.is_empty() && fpath.trim().is_empty() {
            out.push(FieldError::invalid(
                child(&rp, "fieldPath"),
                Value::String(fpath.into()),
                "must be non-empty if specified",
            ));
        }
        if has_newline(fpath) {
            out.push(FieldError::invalid(
                child(&rp, "fieldPath"),
                Value::String(fpath.into()),
                "must not contain line breaks",
            ));
        }
    }
}
