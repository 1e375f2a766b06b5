use serde_json::json;

use super::*;

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "name": {"type": "string", "maxLength": 10},
            "ratio": {"type": "number"},
            "enabled": {"type": "boolean"},
            "when": {"type": "string", "format": "date-time"},
            "timeout": {"type": "string", "format": "duration"},
            "port": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "key": {"type": "string"}, "value": {"type": "integer"}}}},
            "x-y": {"type": "string"},
            "namespace": {"type": "string"}
        }},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    }})
}

fn root() -> Ty {
    types::of_root(&schema())
}

fn spec() -> Ty {
    types::of_schema(&schema()["properties"]["spec"])
}

#[test]
fn well_typed_rules_pass_with_their_result_type() {
    for (rule, at_root) in [
        ("self.metadata.name == 'app'", true),
        (
            "self.spec.replicas <= 10 && self.spec.name.startsWith('a')",
            true,
        ),
        ("has(self.status) ? self.status.ready : true", true),
        ("self == oldSelf", false),
        ("self.replicas > 0.5", false),
        ("self.tags.all(t, t.size() < 5)", false),
        ("self.tags.exists_one(t, t == 'x')", false),
        ("self.items.map(i, i.value).all(v, v >= 0)", false),
        ("self.items.filter(i, i.key == 'a').size() <= 1", false),
        (
            "'a' in self.labels && self.labels['a'].matches('^[a-z]+$')",
            false,
        ),
        ("self.labels.all(k, k.size() < 64)", false),
        ("self.free.anything.goes == 1", false),
        ("self.port == 80 || self.port == 'http'", false),
        ("self.when < timestamp('2030-01-01T00:00:00Z')", false),
        ("self.timeout > duration('1s')", false),
        ("self.x__dash__y != ''", false),
        ("self.__namespace__ != ''", false),
        ("quantity('1Gi').isLessThan(quantity('2Gi'))", false),
        ("url('https://a/b').getHost() == 'a'", false),
        (
            "isURL(self.name) || self.name.lowerAscii() == self.name",
            false,
        ),
        ("base64.encode(bytes(self.name)) != ''", false),
        (
            "format.dns1123Label().validate(self.name).hasValue() == false",
            false,
        ),
        ("size(self.tags) == self.tags.size()", false),
        ("self.tags + ['a'] == ['a']", false),
        ("int(self.ratio) + 1 > 0", false),
        ("type(self.name) == string || true", false),
    ] {
        let t = if at_root { root() } else { spec() };
        let got = check(rule, &t);
        // `type()` is not a function of the runtime: refused like other unknown functions.
        if rule.starts_with("type(") {
            assert!(got.unwrap_err().contains("undeclared reference to 'type'"));
            continue;
        }
        assert_eq!(got, Ok(Ty::Bool), "{rule}");
    }
}

#[test]
fn ill_typed_rules_are_refused_with_the_reason() {
    for (rule, want) in [
        ("self.spec.nope == 1", "undefined field 'nope'"),
        (
            "self.metadata.labels['a'] == 'b'",
            "undefined field 'labels'",
        ),
        (
            "self.status.ready.x",
            "type 'bool' does not support field selection",
        ),
        (
            "self.spec.replicas == 'a'",
            "'_==_' applied to '(int, string)'",
        ),
        (
            "self.spec.name + 1 == 'a'",
            "'_+_' applied to '(string, int)'",
        ),
        (
            "self.spec.replicas.startsWith('a')",
            "'startsWith' applied to 'int.(string)'",
        ),
        ("size(self.spec.replicas) > 0", "'size' applied to '(int)'"),
        (
            "frobnicate(self.spec.name)",
            "undeclared reference to 'frobnicate'",
        ),
        ("self.spec.name.frob()", "undeclared reference to 'frob'"),
        ("other.x == 1", "undeclared reference to 'other'"),
        (
            "self.spec.replicas && true",
            "'_&&_' applied to '(int, bool)'",
        ),
        (
            "self.spec.enabled ? 1 : 'a'",
            "'_?_:_' applied to '(bool, int, string)'",
        ),
        (
            "self.spec.replicas.all(x, x > 0)",
            "cannot be range of a comprehension",
        ),
        (
            "self.spec.tags.all(t, t.nope)",
            "type 'string' does not support field selection",
        ),
        (
            "self.spec.items.all(i, i.missing == 1)",
            "undefined field 'missing'",
        ),
        (
            "self.spec.when > 3",
            "'_>_' applied to '(google.protobuf.Timestamp, int)'",
        ),
    ] {
        let e = check(rule, &root()).expect_err(rule);
        assert!(e.contains(want), "{rule}: {e}");
    }
}

#[test]
fn results_and_reasons_of_every_rule_in_a_schema() {
    let mut s = schema();
    s["x-kubernetes-validations"] = json!([
        {"rule": "self.metadata.name == 'app'"},
        {"rule": "self.spec.name", "message": "not bool"},
        {"rule": "self.spec.nope == 1"},
    ]);
    s["properties"]["spec"]["x-kubernetes-validations"] = json!([
        {"rule": "self.replicas > 0", "messageExpression": "self.replicas", "reason": "Bogus"},
        {"rule": "oldSelf == null || oldSelf.name == self.name", "optionalOldSelf": true},
        {"rule": "!oldSelf.hasValue() || oldSelf.value().name == self.name", "optionalOldSelf": true},
        {"rule": "   "},
    ]);
    s["properties"]["spec"]["properties"]["tags"]["items"]["x-kubernetes-validations"] =
        json!([{"rule": "self.size() > 0"}, {"rule": "self.x == 1"}]);
    let causes = check_schema(&s, "p");
    let got: Vec<(&str, &str)> = causes
        .iter()
        .map(|c| (c.field.as_str(), c.message.as_str()))
        .collect();
    let fields: Vec<&str> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        fields,
        [
            "p.x-kubernetes-validations[1].rule",
            "p.x-kubernetes-validations[2].rule",
            "p.properties[spec].x-kubernetes-validations[0].messageExpression",
            "p.properties[spec].x-kubernetes-validations[0].reason",
            "p.properties[spec].x-kubernetes-validations[2].rule",
            "p.properties[spec].x-kubernetes-validations[3].rule",
            "p.properties[spec].properties[tags].items.x-kubernetes-validations[1].rule",
        ],
        "{got:#?}"
    );
    assert!(got[0].1.contains("must evaluate to a bool (got string)"));
    assert!(got[1].1.contains("undefined field 'nope'"));
    assert!(got[2].1.contains("must evaluate to a string (got int)"));
    assert!(got[3].1.contains("Unsupported value: \"Bogus\""));
    assert!(got[4].1.contains("'hasValue' applied to 'object.()'"));
    assert!(got[4].1.contains("write `oldSelf == null"));
    assert_eq!(got[5].1, "Required value");
    assert!(
        got[6]
            .1
            .contains("type 'string' does not support field selection")
    );
}

#[test]
fn property_names_are_escaped_as_upstream() {
    assert_eq!(
        types::escape("a-b.c/d_e"),
        "a__dash__b__dot__c__slash__d__e"
    );
    assert_eq!(types::escape("namespace"), "__namespace__");
    assert_eq!(types::escape("plain"), "plain");
}

#[test]
fn embedded_resources_and_open_nodes() {
    let s = json!({"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                     "x-kubernetes-preserve-unknown-fields": true}}});
    let t = types::of_root(&s);
    assert_eq!(
        check(
            "self.template.kind == 'Pod' && self.template.spec.x == 1",
            &t
        ),
        Ok(Ty::Bool)
    );
    assert_eq!(
        check("self.template.metadata.name == 'a'", &t),
        Ok(Ty::Bool)
    );
    assert!(check("self.template.metadata.labels == 1", &t).is_err());
}
