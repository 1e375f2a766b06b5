//! Scenario tests across the public API.

use super::*;
use serde_json::{Value, json};

fn msgs(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(|e| e.to_string()).collect()
}

fn has(errs: &[FieldError], want: &str) -> bool {
    errs.iter().any(|e| e.to_string() == want)
}

const P: &str = "spec.validation.openAPIV3Schema";

// ---------- structural ----------

#[test]
fn structural_ok_schema_has_no_errors() {
    let s = json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}},
            "spec": {
                "type": "object",
                "properties": {
                    "port": {"x-kubernetes-int-or-string": true,
                             "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "any": {"x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "replicas": {"type": "integer", "default": 1, "minimum": 0}
                },
                "anyOf": [{"required": ["port"]}, {"required": ["raw"]}]
            }
        }
    });
    assert_eq!(msgs(&check_structural(&s, P)), Vec::<String>::new());
}

#[test]
fn structural_missing_types() {
    let s = json!({
        "properties": {
            "spec": {"properties": {"a": {}}},
            "list": {"type": "array"},
            "list2": {"type": "array", "items": {}}
        }
    });
    let e = check_structural(&s, P);
    for want in [
        "spec.validation.openAPIV3Schema.type: Required value: must not be empty at the root",
        "spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
        "spec.validation.openAPIV3Schema.properties[spec].properties[a].type: Required value: must not be empty for specified object fields",
        "spec.validation.openAPIV3Schema.properties[list].items: Required value: must be specified",
        "spec.validation.openAPIV3Schema.properties[list2].items.type: Required value: must not be empty for specified array items",
    ] {
        assert!(has(&e, want), "missing {want}\n{:#?}", msgs(&e));
    }
    // Structural errors are sorted by message, as upstream.
    let m = msgs(&e);
    let mut sorted = m.clone();
    sorted.sort();
    assert_eq!(m, sorted);
}

#[test]
fn structural_nested_value_validations() {
    let s = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}},
            "allOf": [{"type": "object", "description": "d", "default": {}, "nullable": true,
                        "properties": {"a": {"pattern": "^x"}, "b": {"minLength": 1},
                                       "metadata": {"type": "object"}}}],
            "not": {"x-kubernetes-preserve-unknown-fields": true, "additionalProperties": {"type": "string"}}
        }}
    });
    let e = check_structural(&s, "p");
    for want in [
        "p.properties[spec].allOf[0].type: Forbidden: must be empty to be structural",
        "p.properties[spec].allOf[0].description: Forbidden: must be empty to be structural",
        "p.properties[spec].allOf[0].default: Forbidden: must be undefined to be structural",
        "p.properties[spec].allOf[0].nullable: Forbidden: must be false to be structural",
        "p.properties[spec].allOf[0].properties[metadata]: Forbidden: must not be specified in a nested context",
        "p.properties[spec].allOf[0].properties[metadata].type: Forbidden: must be empty to be structural",
        "p.properties[spec].not.x-kubernetes-preserve-unknown-fields: Forbidden: must be false to be structural",
        "p.properties[spec].not.additionalProperties: Forbidden: must be undefined to be structural",
    ] {
        assert!(has(&e, want), "missing {want}\n{:#?}", msgs(&e));
    }
}

#[test]
fn structural_completeness_at_root() {
    let s = json!({
        "type": "object",
        "properties": {"spec": {"type": "object"}},
        "anyOf": [{"properties": {"spec": {"properties": {"x": {"minimum": 1}}}, "status": {}}}]
    });
    let e = check_structural(&s, "p");
    assert!(
        has(
            &e,
            "p.properties[spec].properties[x]: Required value: because it is defined in p.anyOf[0].properties[spec].properties[x]"
        ),
        "{:#?}",
        msgs(&e)
    );
    assert!(
        has(
            &e,
            "p.properties[status]: Required value: because it is defined in p.anyOf[0].properties[status]"
        ),
        "{:#?}",
        msgs(&e)
    );
}

#[test]
fn structural_metadata_and_embedded_rules() {
    let s = json!({
        "type": "object",
        "additionalProperties": {"type": "string"},
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "kind": {"type": "integer"},
            "spec": {"type": "object", "properties": {
                "tmpl": {"x-kubernetes-embedded-resource": true},
                "ios": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true}
            }}
        }
    });
    let e = check_structural(&s, "p");
    for want in [
        "p.additionalProperties: Forbidden: must not be used at the root",
        "p.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
        "p.properties[kind].type: Invalid value: \"integer\": must be string",
        "p.properties[spec].properties[tmpl].type: Required value: must be object if x-kubernetes-embedded-resource is true",
        "p.properties[spec].properties[tmpl].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        "p.properties[spec].properties[ios].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true",
    ] {
        assert!(has(&e, want), "missing {want}\n{:#?}", msgs(&e));
    }
    // The keyword-level rule also fires for properties + additionalProperties.
    assert!(has(
        &e,
        "p.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
    ));
}

#[test]
fn structural_keyword_restrictions() {
    let s = json!({
        "type": "object",
        "nullable": true,
        "properties": {
            "metadata": {"type": "object", "default": {}},
            "spec": {"type": "object", "properties": {
                "a": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "b": {"type": "null"},
                "c": {"type": "strin"},
                "d": {"type": "string", "$ref": "#/x"},
                "e": {"type": "string", "x-kubernetes-preserve-unknown-fields": false},
                "f": {"type": "string", "pattern": "(?=x)"},
                "g": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"},
                "h": {"type": "string", "x-kubernetes-map-type": "atomic"}
            }}
        }
    });
    let e = check_structural(&s, "p");
    for want in [
        "p.nullable: Forbidden: nullable cannot be true at the root",
        "p.properties[metadata].default: Forbidden: must not be set in top-level metadata",
        "p.properties[spec].properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        "p.properties[spec].properties[b].type: Forbidden: type cannot be set to null, use nullable as an alternative",
        "p.properties[spec].properties[c].type: Unsupported value: \"strin\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
        "p.properties[spec].properties[d].$ref: Forbidden: $ref is not supported",
        "p.properties[spec].properties[e].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
        "p.properties[spec].properties[g].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\"",
        "p.properties[spec].properties[h].type: Invalid value: \"string\": must be object if x-kubernetes-map-type is specified",
    ] {
        assert!(has(&e, want), "missing {want}\n{:#?}", msgs(&e));
    }
    assert!(
        e.iter()
            .any(|x| x.field == "p.properties[spec].properties[f].pattern"
                && x.detail
                    .starts_with("must be a valid regular expression, but isn't: ")),
        "{:#?}",
        msgs(&e)
    );
}

#[test]
fn structural_list_map_keys() {
    let s = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["port", "proto", "missing", "sub"],
                "items": {"type": "object", "required": ["port"], "properties": {
                    "port": {"type": "integer"},
                    "proto": {"type": "string", "nullable": true},
                    "sub": {"type": "object", "default": {}}
                }}
            },
            "keysOnly": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-map-keys": ["a"]}
        }}}
    });
    let e = check_structural(&s, "p");
    let sp = "p.properties[spec].properties[ports]";
    for want in [
        format!("{sp}.items.properties[proto].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"),
        format!("{sp}.items.properties[proto].nullable: Forbidden: this property is in x-kubernetes-list-map-keys, so it cannot be nullable"),
        format!("{sp}.x-kubernetes-list-map-keys: Invalid value: [\"port\",\"proto\",\"missing\",\"sub\"]: entries must all be names of item properties"),
        format!("{sp}.items.properties[sub].type: Invalid value: \"object\": must be a scalar type if parent array's x-kubernetes-list-type is map"),
        "p.properties[spec].properties[keysOnly].x-kubernetes-list-type: Required value: must be map if x-kubernetes-list-map-keys is non-empty".to_string(),
    ] {
        assert!(has(&e, &want), "missing {want}\n{:#?}", msgs(&e));
    }
}

#[test]
fn structural_defaults_must_validate_and_be_pruned() {
    let s = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "default": "three"},
            "tpl": {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "c"},
            "good": {"type": "array", "items": {"type": "string", "default": "x"}, "default": ["y"]}
        }}}
    });
    let e = check_structural(&s, "p");
    let base = "p.properties[spec].properties";
    // Messages name the validator path relative to the default, which is
    // empty for a scalar default (upstream prints " in body ...").
    assert!(
        has(
            &e,
            &format!(
                "{base}[replicas].default: Invalid value: \"string\":  in body must be of type integer: \"string\""
            )
        ),
        "{:#?}",
        msgs(&e)
    );
    assert!(
        has(
            &e,
            &format!(
                "{base}[tpl].default: Invalid value: {{\"a\":\"x\",\"b\":1}}: must not have unknown fields"
            )
        ),
        "{:#?}",
        msgs(&e)
    );
    assert!(
        has(
            &e,
            &format!(
                "{base}[mode].default: Unsupported value: \"c\": supported values: \"a\", \"b\""
            )
        ),
        "{:#?}",
        msgs(&e)
    );
    assert_eq!(e.len(), 3, "{:#?}", msgs(&e));
}

#[test]
fn structural_malformed_keywords() {
    let s = json!({"type": "object", "properties": {"a": {"type": 5, "required": "x", "minLength": "1"}}});
    let e = check_structural(&s, "p");
    assert!(
        has(
            &e,
            "p.properties[a].type: Invalid value: 5: must be a string"
        ),
        "{:#?}",
        msgs(&e)
    );
    assert!(has(
        &e,
        "p.properties[a].required: Invalid value: \"x\": must be a list of strings"
    ));
    assert!(has(
        &e,
        "p.properties[a].minLength: Invalid value: \"1\": must be an integer"
    ));
}

// ---------- pruning ----------

fn prune_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "name": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                         "properties": {"known": {"type": "object", "properties": {"k": {"type": "string"}}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}}
            }}
        }
    })
}

#[test]
fn prune_nested_preserve_and_embedded() {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "whatever": 1},
        "extra": 1,
        "spec": {
            "name": "n", "bogus": true,
            "items": [{"a": "x", "b": "y"}, {"c": 1}],
            "free": {"anything": {"deep": 1}, "known": {"k": "v", "drop": 1}},
            "labels": {"l1": {"v": "1", "w": "2"}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"a": "b"}},
                         "spec": {"x": "1", "y": "2"}, "status": {}}
        }
    });
    let pruned = prune(&prune_schema(), &mut obj);
    assert_eq!(
        pruned,
        vec![
            "extra",
            "spec.bogus",
            "spec.free.known.drop",
            "spec.items[0].b",
            "spec.items[1].c",
            "spec.labels.l1.w",
            "spec.template.spec.y",
            "spec.template.status",
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "whatever": 1},
            "spec": {
                "name": "n",
                "items": [{"a": "x"}, {}],
                "free": {"anything": {"deep": 1}, "known": {"k": "v"}},
                "labels": {"l1": {"v": "1"}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"a": "b"}},
                             "spec": {"x": "1"}}
            }
        })
    );
}

#[test]
fn prune_root_preserve_unknown_keeps_everything_unknown() {
    let s = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                   "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    let mut obj =
        json!({"apiVersion": "v1", "kind": "K", "other": {"x": 1}, "spec": {"a": "1", "b": 2}});
    assert_eq!(prune(&s, &mut obj), vec!["spec.b"]);
    assert_eq!(
        obj,
        json!({"apiVersion": "v1", "kind": "K", "other": {"x": 1}, "spec": {"a": "1"}})
    );
}

// ---------- defaulting ----------

#[test]
fn defaults_nested_arrays_maps_and_nulls() {
    let s = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "default": {}, "properties": {
            "replicas": {"type": "integer", "default": 1},
            "strategy": {"type": "object", "default": {}, "properties": {
                "type": {"type": "string", "default": "Rolling"}}},
            "ports": {"type": "array", "items": {"type": "object", "properties": {
                "protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}}}},
            "tags": {"type": "array", "items": {"type": "string", "default": "none"}},
            "limits": {"type": "object", "additionalProperties": {"type": "object", "default": {"v": 0},
                        "properties": {"unit": {"type": "string", "default": "m"}}}},
            "nullableNoDefault": {"type": "string", "nullable": true},
            "nonNullNoDefault": {"type": "string"},
            "nullWithDefault": {"type": "string", "default": "d"}
        }}}
    });
    let mut obj = json!({"spec": {
        "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
        "tags": ["a", null],
        "limits": {"cpu": {"v": 1}, "mem": null},
        "nullableNoDefault": null,
        "nonNullNoDefault": null,
        "nullWithDefault": null
    }});
    apply_defaults(&s, &mut obj);
    assert_eq!(
        obj,
        json!({"spec": {
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "tags": ["a", "none"],
            "limits": {"cpu": {"v": 1, "unit": "m"}, "mem": {"v": 0, "unit": "m"}},
            "nullableNoDefault": null,
            "nullWithDefault": "d",
            "replicas": 1,
            "strategy": {"type": "Rolling"}
        }})
    );
    // A missing object with a default is created and defaulted below.
    let mut empty = json!({});
    apply_defaults(&s, &mut empty);
    assert_eq!(
        empty,
        json!({"spec": {"replicas": 1, "strategy": {"type": "Rolling"}, "nullWithDefault": "d"}})
    );
}

// ---------- validation keywords ----------

fn v(schema: Value, obj: Value) -> Vec<String> {
    msgs(&validate(&schema, &obj))
}

fn spec(props: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
}

#[test]
fn validate_types() {
    let s = spec(
        json!({"replicas": {"type": "integer"}, "name": {"type": "string"},
                        "ok": {"type": "boolean"}, "n": {"type": "number"}}),
    );
    assert_eq!(
        v(s.clone(), json!({"spec": {"replicas": "string"}})),
        vec![
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ]
    );
    assert_eq!(
        validate(&s, &json!({"spec": {"replicas": "x"}}))[0].reason,
        REASON_TYPE_INVALID
    );
    // 1.0 decodes as a float that is an integer: accepted; 1.5 is not.
    assert!(v(s.clone(), json!({"spec": {"replicas": 1.0, "n": 3}})).is_empty());
    let e = v(s.clone(), json!({"spec": {"replicas": 1.5}}));
    assert_eq!(
        e[0],
        r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#
    );
    assert!(e.iter().any(|m| m == r#"<nil>: Invalid value: "": Checked value must be of type integer (default format) in spec.replicas"#), "{e:#?}");
    assert_eq!(
        v(s.clone(), json!({"spec": {"name": null, "ok": "yes"}})),
        vec![
            r#"spec.name: Invalid value: "null": spec.name in body must be of type string: "null""#,
            r#"spec.ok: Invalid value: "string": spec.ok in body must be of type boolean: "string""#,
        ]
    );
    let nullable = spec(json!({"name": {"type": "string", "nullable": true}}));
    assert!(v(nullable, json!({"spec": {"name": null}})).is_empty());
}

#[test]
fn validate_int_or_string() {
    let s = spec(json!({"port": {"x-kubernetes-int-or-string": true,
                                 "anyOf": [{"type": "integer"}, {"type": "string"}]}}));
    assert!(v(s.clone(), json!({"spec": {"port": 80}})).is_empty());
    assert!(v(s.clone(), json!({"spec": {"port": "http"}})).is_empty());
    let e = v(s, json!({"spec": {"port": true}}));
    assert_eq!(
        e[0],
        r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
    );
    assert!(
        e.contains(
            &r#"<nil>: Invalid value: "": "spec.port" must validate at least one schema (anyOf)"#
                .to_string()
        ),
        "{e:#?}"
    );
}

#[test]
fn validate_strings() {
    let s = spec(json!({
        "name": {"type": "string", "maxLength": 5},
        "short": {"type": "string", "minLength": 3},
        "pat": {"type": "string", "pattern": "^[a-z]+$"},
        "uni": {"type": "string", "maxLength": 2}
    }));
    assert_eq!(
        v(
            s.clone(),
            json!({"spec": {"name": "abcdef", "short": "ab", "pat": "ABC", "uni": "éé"}})
        ),
        vec![
            "spec.name: Too long: may not be more than 5 bytes",
            r#"spec.short: Invalid value: "ab": spec.short in body should be at least 3 chars long"#,
            r#"spec.pat: Invalid value: "ABC": spec.pat in body should match '^[a-z]+$'"#,
        ]
    );
}

#[test]
fn validate_numbers() {
    let s = spec(json!({
        "min": {"type": "integer", "minimum": 1},
        "exmin": {"type": "integer", "minimum": 1, "exclusiveMinimum": true},
        "max": {"type": "number", "maximum": 2.5},
        "exmax": {"type": "number", "maximum": 10, "exclusiveMaximum": true},
        "mult": {"type": "integer", "multipleOf": 5},
        "fmult": {"type": "number", "multipleOf": 0.5},
        "i32": {"type": "integer", "format": "int32"}
    }));
    assert_eq!(
        v(
            s.clone(),
            json!({"spec": {"min": 0, "exmin": 1, "max": 3, "exmax": 10.0, "mult": 7, "fmult": 0.3, "i32": 3000000000i64}})
        ),
        vec![
            "spec.min: Invalid value: 0: spec.min in body should be greater than or equal to 1",
            "spec.exmin: Invalid value: 1: spec.exmin in body should be greater than 1",
            "spec.max: Invalid value: 3: spec.max in body should be less than or equal to 2",
            "spec.exmax: Invalid value: 10: spec.exmax in body should be less than 10",
            "spec.mult: Invalid value: 7: spec.mult in body should be a multiple of 5",
            "spec.fmult: Invalid value: 0.3: spec.fmult in body should be a multiple of 0.5",
            r#"<nil>: Invalid value: "": Checked value must be of type integer with format int32 in spec.i32"#,
        ]
    );
    assert!(v(s, json!({"spec": {"min": 1, "exmin": 2, "max": 2.5, "exmax": 9.9, "mult": 10, "fmult": 1.5, "i32": 7}})).is_empty());
}

#[test]
fn validate_arrays_and_objects() {
    let s = spec(json!({
        "few": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "many": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "uniq": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true},
        "props": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
        "mprops": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1},
        "closed": {"type": "object", "additionalProperties": false}
    }));
    assert_eq!(
        v(
            s,
            json!({"spec": {"few": [], "many": ["a", "b", "c"], "uniq": [1, 2, 1],
                               "props": {}, "mprops": {"a": "1", "b": 2}, "closed": {"x": 1}}})
        ),
        vec![
            "spec.few: Invalid value: 0: spec.few in body should have at least 1 items",
            "spec.many: Too many: 3: must have at most 2 items",
            r#"spec.uniq: Invalid value: "": spec.uniq in body shouldn't contain duplicates"#,
            "spec.props: Invalid value: 0: spec.props in body should have at least 1 properties",
            "spec.mprops: Too many: 2: must have at most 1 item",
            r#"spec.mprops.b: Invalid value: "integer": spec.mprops.b in body must be of type string: "integer""#,
            r#"spec.closed: Invalid value: "x": spec.closed.x in body is a forbidden property"#,
        ]
    );
}

#[test]
fn validate_enum_and_required() {
    let s = json!({"type": "object", "required": ["spec"], "properties": {"spec": {
        "type": "object", "required": ["mode", "name"],
        "properties": {"mode": {"type": "string", "enum": ["a", "b"]},
                       "level": {"type": "integer", "enum": [1, 2]},
                       "name": {"type": "string"}}}}});
    assert_eq!(
        v(s.clone(), json!({"spec": {"mode": "x", "level": 3}})),
        vec![
            r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#,
            r#"spec.level: Unsupported value: 3: supported values: "1", "2""#,
            "spec.name: Required value",
        ]
    );
    let e = validate(&s, &json!({}));
    assert_eq!(msgs(&e), vec!["spec: Required value"]);
    assert_eq!(e[0].reason, REASON_REQUIRED);
    assert_eq!(e[0].body(), "Required value");
}

#[test]
fn validate_composition() {
    let s = spec(json!({
        "one": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        "all": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]},
        "not": {"type": "string", "not": {"enum": ["forbidden"]}}
    }));
    assert!(
        v(
            s.clone(),
            json!({"spec": {"one": {"a": "x"}, "all": 3, "not": "ok"}})
        )
        .is_empty()
    );
    let e = v(
        s,
        json!({"spec": {"one": {"a": "x", "b": "y"}, "all": 9, "not": "forbidden"}}),
    );
    assert_eq!(
        e,
        vec![
            r#"<nil>: Invalid value: "": "spec.one" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            "spec.all: Invalid value: 9: spec.all in body should be less than or equal to 5",
            r#"<nil>: Invalid value: "": "spec.all" must validate all the schemas (allOf)"#,
            r#"<nil>: Invalid value: "": "spec.not" must not validate the schema (not)"#,
        ]
    );
}

#[test]
fn validate_formats() {
    let s = spec(json!({
        "t": {"type": "string", "format": "date-time"},
        "d": {"type": "string", "format": "date"},
        "b": {"type": "string", "format": "byte"},
        "u": {"type": "string", "format": "uuid"},
        "ip": {"type": "string", "format": "ipv4"},
        "c": {"type": "string", "format": "cidr"},
        "h": {"type": "string", "format": "hostname"},
        "unknown": {"type": "string", "format": "made-up"}
    }));
    assert!(
        v(
            s.clone(),
            json!({"spec": {"t": "2024-01-02T03:04:05Z", "d": "2024-01-02", "b": "YWJj",
        "u": "123e4567-e89b-12d3-a456-426614174000", "ip": "1.2.3.4", "c": "10.0.0.0/8",
        "h": "example.com", "unknown": "!!"}})
        )
        .is_empty()
    );
    assert_eq!(
        v(
            s,
            json!({"spec": {"t": "yesterday", "d": "2024-13-01", "b": "***", "ip": "1.2.3", "t2": 1}})
        ),
        vec![
            r#"spec.t: Invalid value: "yesterday": spec.t in body must be of type date-time: "yesterday""#,
            r#"spec.d: Invalid value: "2024-13-01": spec.d in body must be of type date: "2024-13-01""#,
            r#"spec.b: Invalid value: "***": spec.b in body must be of type byte: "***""#,
            r#"spec.ip: Invalid value: "1.2.3": spec.ip in body must be of type ipv4: "1.2.3""#,
        ]
    );
}

#[test]
fn validate_list_types_and_embedded() {
    let s = spec(json!({
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}},
        "res": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
    }));
    assert_eq!(
        v(
            s,
            json!({"spec": {"set": ["a", "b", "a", "a"], "map": [{"name": "x", "v": 1}, {"name": "x", "v": 2}],
                               "res": {"kind": 3}}})
        ),
        vec![
            r#"spec.set[2]: Duplicate value: "a""#,
            r#"spec.map[1]: Duplicate value: {"name":"x"}"#,
            "spec.res.apiVersion: Required value",
            "spec.res.kind: Invalid value: 3: must be a string",
        ]
    );
}

// ---------- realistic CRD ----------

fn container_crd_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "minLength": 1},
                    "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
                    "pullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"], "default": "IfNotPresent"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                        "items": {
                            "type": "object",
                            "required": ["containerPort"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 15, "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"},
                                "containerPort": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
                                "protocol": {"type": "string", "default": "TCP", "enum": ["TCP", "UDP", "SCTP"]}
                            }
                        }
                    },
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "resources": {"type": "object", "properties": {
                        "limits": {"type": "object", "additionalProperties": {
                            "x-kubernetes-int-or-string": true,
                            "anyOf": [{"type": "integer"}, {"type": "string"}],
                            "pattern": "^[0-9]+(m|Mi|Gi)?$"}}
                    }}
                }
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
    })
}

#[test]
fn realistic_crd_good_and_bad() {
    let raw = container_crd_schema();
    assert!(
        check_structural(&raw, "spec.versions[0].schema.openAPIV3Schema").is_empty(),
        "{:#?}",
        msgs(&check_structural(
            &raw,
            "spec.versions[0].schema.openAPIV3Schema"
        ))
    );
    let s = match Schema::parse(&raw) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}"),
    };

    let mut good = json!({
        "apiVersion": "example.com/v1", "kind": "App", "metadata": {"name": "a"},
        "spec": {"image": "nginx", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 80, "protocol": "UDP"}],
                 "env": {"A": "1"}, "resources": {"limits": {"cpu": "500m", "count": 2}}, "unknown": 1},
        "status": {"anything": true}
    });
    assert_eq!(s.prune(&mut good), vec!["spec.unknown"]);
    s.apply_defaults(&mut good);
    assert_eq!(good["spec"]["replicas"], json!(1));
    assert_eq!(good["spec"]["ports"][0]["protocol"], json!("TCP"));
    assert_eq!(s.validate(&good), Vec::<FieldError>::new());

    let mut bad = json!({
        "apiVersion": "example.com/v1", "kind": "App", "metadata": {"name": "a"},
        "spec": {"replicas": -1, "pullPolicy": "Sometimes",
                 "ports": [{"containerPort": 80, "name": "HTTP"}, {"containerPort": 80}, {"containerPort": 70000}],
                 "env": {"A": 1}, "resources": {"limits": {"cpu": "lots"}}}
    });
    s.apply_defaults(&mut bad);
    let e = msgs(&s.validate(&bad));
    assert_eq!(
        e,
        vec![
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
            r#"spec.pullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
            r#"spec.ports[0].name: Invalid value: "HTTP": spec.ports[0].name in body should match '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'"#,
            "spec.ports[2].containerPort: Invalid value: 70000: spec.ports[2].containerPort in body should be less than or equal to 65535",
            r#"spec.env.A: Invalid value: "integer": spec.env.A in body must be of type string: "integer""#,
            r#"spec.resources.limits.cpu: Invalid value: "lots": spec.resources.limits.cpu in body should match '^[0-9]+(m|Mi|Gi)?$'"#,
            "spec.image: Required value",
            r#"spec.ports[1]: Duplicate value: {"containerPort":80,"protocol":"TCP"}"#,
        ]
    );
}

#[test]
fn validate_at_prefixes_fields() {
    let s = match Schema::parse(&spec(json!({"a": {"type": "string"}}))) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}"),
    };
    let e = s.validate_at(&json!({"spec": {"a": 1}}), "x.default");
    assert_eq!(
        msgs(&e),
        vec![
            r#"x.default.spec.a: Invalid value: "integer": spec.a in body must be of type string: "integer""#
        ]
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|i| json!(i)),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,3}|spec|name|items|a", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Pruning is idempotent and leaves nothing the schema would prune.
        #[test]
        fn prune_idempotent(mut obj in arb_json()) {
            let s = prune_schema();
            prune(&s, &mut obj);
            let again = obj.clone();
            let mut twice = obj;
            prop_assert!(prune(&s, &mut twice).is_empty());
            prop_assert_eq!(twice, again);
        }

        // Defaulting twice changes nothing more than once; validation never panics.
        #[test]
        fn defaults_idempotent(mut obj in arb_json()) {
            let s = container_crd_schema();
            apply_defaults(&s, &mut obj);
            let once = obj.clone();
            apply_defaults(&s, &mut obj);
            prop_assert_eq!(&obj, &once);
            let _ = validate(&s, &obj);
        }
    }
}
