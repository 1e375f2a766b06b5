//! FieldsV1 encoding and `fields_of` against upstream-shaped examples.

use rdd_ssa::{FieldSet, Scope, apply, fields_of, update};
use serde_json::{Value, json};

fn round_trip(v: &Value) {
    let set = FieldSet::from_fields_v1(v).unwrap();
    assert_eq!(&set.to_fields_v1(), v);
    assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap(), set);
}

#[test]
fn brief_example_round_trips_with_sorted_output() {
    let v = json!({
        "f:metadata": {"f:labels": {"f:a": {}}},
        "f:spec": {"f:ports": {"k:{\"name\":\"http\"}": {".": {}, "f:name": {}}}},
        "f:finalizers": {"v:\"x\"": {}}
    });
    round_trip(&v);
    let set = FieldSet::from_fields_v1(&v).unwrap();
    assert_eq!(
        set.to_fields_v1().to_string(),
        r#"{"f:finalizers":{"v:\"x\"":{}},"f:metadata":{"f:labels":{"f:a":{}}},"f:spec":{"f:ports":{"k:{\"name\":\"http\"}":{".":{},"f:name":{}}}}}"#
    );
    assert_eq!(
        set.paths(),
        vec![
            r#".finalizers[="x"]"#,
            ".metadata.labels.a",
            r#".spec.ports[name="http"]"#,
            r#".spec.ports[name="http"].name"#,
        ]
    );
}

#[test]
fn kubectl_outputs_round_trip() {
    // ConfigMap applied with kubectl (server-side-apply docs).
    round_trip(&json!({"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}}));
    // Deployment applied with kubectl apply --server-side.
    round_trip(&json!({"f:spec": {
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
            }}}
        }
    }}));
    // Controller status update (kube-controller-manager).
    round_trip(&json!({
        "f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}},
        "f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {
            ".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {},
            "f:status": {}, "f:type": {}
        }}, "f:replicas": {}}
    }));
    round_trip(&json!({"f:spec": {"f:args": {"i:0": {}, "i:1": {}}}}));
}

#[test]
fn key_field_order_is_canonicalised() {
    let a = FieldSet::from_fields_v1(&json!({"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {}}))
        .unwrap();
    assert_eq!(
        a.to_fields_v1(),
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}})
    );
}

#[test]
fn bad_fields_v1_is_invalid() {
    for bad in [
        json!({"x:a": {}}),
        json!({"f:a": "s"}),
        json!({"k:nope": {}}),
        json!(3),
    ] {
        assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
    }
}

/// Enough of the Deployment schema (as the OpenAPI of built-ins carries it,
/// with strategic-merge extensions) to reproduce kubectl's output.
fn deployment_schema() -> Value {
    json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {
            "name": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
        }},
        "spec": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {
                "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "template": {"type": "object", "properties": {
                "metadata": {"type": "object", "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                }},
                "spec": {"type": "object", "properties": {
                    "containers": {
                        "type": "array",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge",
                        "items": {"type": "object", "properties": {
                            "name": {"type": "string"},
                            "image": {"type": "string"},
                            "ports": {
                                "type": "array",
                                "x-kubernetes-list-type": "map",
                                "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                                "x-kubernetes-patch-merge-key": "containerPort",
                                "x-kubernetes-patch-strategy": "merge",
                                "items": {"type": "object", "properties": {
                                    "containerPort": {"type": "integer"},
                                    "protocol": {"type": "string", "default": "TCP"}
                                }}
                            }
                        }}
                    }
                }}
            }}
        }}
    }})
}

fn nginx() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx"},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                         "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

#[test]
fn apply_of_deployment_matches_kubectl_server_side_output() {
    let s = deployment_schema();
    let out = apply(
        None,
        &nginx(),
        &[],
        "kubectl",
        "apps/v1",
        None,
        Scope::All,
        false,
        Some(&s),
        "2024-01-01T00:00:00Z",
    )
    .unwrap();
    let entry = &out.managed_fields[0];
    assert_eq!(
        entry.fields_v1.as_ref().unwrap(),
        &json!({"f:spec": {
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:containerPort": {}
                    }}
                }}}
            }
        }})
    );
    assert_eq!(serde_json::to_value(entry).unwrap()["operation"], "Apply");
}

#[test]
fn update_on_create_marks_new_containers_like_upstream() {
    let s = deployment_schema();
    let mut obj = nginx();
    obj["metadata"]["labels"] = json!({"app": "nginx"});
    let mf = update(
        None,
        &obj,
        &[],
        "kubectl-create",
        "apps/v1",
        None,
        Scope::All,
        Some(&s),
        "t",
    );
    let fields = mf[0].fields_v1.as_ref().unwrap();
    // New maps that are not leaves get "." in Update entries.
    assert_eq!(
        fields["f:metadata"],
        json!({"f:labels": {".": {}, "f:app": {}}})
    );
    assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    assert_eq!(mf[0].operation, rdd_ssa::Operation::Update);
}

#[test]
fn fields_of_follows_upstream_rules() {
    let s = common_schema();
    let set = fields_of(
        &json!({
            "apiVersion": "v1", "kind": "Widget",
            "metadata": {"name": "w", "uid": "u", "labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"replicas": 1, "args": ["a"], "selector": {"k": "v"}, "tags": ["t"],
                     "ports": [{"name": "http", "port": 80}], "extra": {"deep": {"x": 1}},
                     "image": null}
        }),
        Some(&s),
    );
    assert_eq!(
        set.paths(),
        vec![
            r#".metadata.finalizers[="x"]"#,
            ".metadata.labels.a",
            ".spec.args",
            ".spec.extra.deep",
            ".spec.extra.deep.x",
            ".spec.image",
            r#".spec.ports[name="http"]"#,
            r#".spec.ports[name="http"].name"#,
            r#".spec.ports[name="http"].port"#,
            ".spec.replicas",
            ".spec.selector",
            r#".spec.tags[="t"]"#,
        ]
    );
    // Schema-less: every nested object is a member, lists are atomic.
    let bare = fields_of(&json!({"spec": {"a": {"b": 1}, "l": [1, 2]}}), None);
    assert_eq!(
        bare.paths(),
        vec![".spec", ".spec.a", ".spec.a.b", ".spec.l"]
    );
}

#[path = "common/mod.rs"]
mod common;

fn common_schema() -> Value {
    common::schema()
}
