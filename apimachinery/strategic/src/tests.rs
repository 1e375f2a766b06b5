use super::*;
use proptest::prelude::*;
use serde_json::json;

/// A trimmed, inlined schema shaped like the published Kubernetes OpenAPI v3
/// documents: object metadata wrapped in `allOf`, patch extensions on the
/// list properties.
fn schema() -> Value {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "data": string_map,
            "metadata": {
                "default": {},
                "allOf": [{
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "labels": string_map,
                        "annotations": string_map,
                        "finalizers": {
                            "type": "array",
                            "items": {"type": "string"},
                            "x-kubernetes-patch-strategy": "merge"
                        },
                        "ownerReferences": {
                            "type": "array",
                            "x-kubernetes-patch-merge-key": "uid",
                            "x-kubernetes-patch-strategy": "merge",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "uid": {"type": "string"},
                                    "kind": {"type": "string"},
                                    "name": {"type": "string"},
                                    "controller": {"type": "boolean"}
                                }
                            }
                        }
                    }
                }]
            },
            "spec": {
                "type": "object",
                "properties": {
                    "nodeSelector": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "x-kubernetes-patch-strategy": "replace"
                    },
                    "containers": {
                        "type": "array",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "image": {"type": "string"},
                                "args": {"type": "array", "items": {"type": "string"}},
                                "env": {
                                    "type": "array",
                                    "x-kubernetes-patch-merge-key": "name",
                                    "x-kubernetes-patch-strategy": "merge",
                                    "items": {"type": "object"}
                                },
                                "ports": {
                                    "type": "array",
                                    "x-kubernetes-patch-merge-key": "containerPort",
                                    "x-kubernetes-patch-strategy": "merge",
                                    "items": {"type": "object"}
                                }
                            }
                        }
                    },
                    "volumes": {
                        "type": "array",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge,retainKeys",
                        "items": {"type": "object"}
                    },
                    "tolerations": {
                        "type": "array",
                        "items": {"type": "object"}
                    },
                    "unkeyed": {
                        "type": "array",
                        "x-kubernetes-patch-strategy": "merge",
                        "items": {"type": "object"}
                    }
                }
            }
        }
    })
}

fn apply(original: Value, patch: Value) -> Value {
    match strategic_merge_patch(&original, &patch, Some(&schema())) {
        Ok(v) => v,
        Err(e) => panic!("patch failed: {e}"),
    }
}

fn apply_err(original: Value, patch: Value) -> PatchError {
    match strategic_merge_patch(&original, &patch, Some(&schema())) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    }
}

/// Fails if any object key in the result is a patch directive.
fn assert_no_directives(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                assert!(!k.starts_with('$'), "directive {k} leaked into {v}");
                assert_no_directives(child);
            }
        }
        Value::Array(a) => a.iter().for_each(assert_no_directives),
        _ => {}
    }
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "containers": [
                {"name": "app", "image": "app:1", "args": ["--a", "--b"],
                 "env": [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "3"}]},
                {"name": "proxy", "image": "envoy:1"}
            ]
        }
    })
}

// --- objects ---------------------------------------------------------------

#[test]
fn configmap_data_merges_and_null_deletes() {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"color": "blue", "size": "L", "shape": "round"}
    });
    let out = apply(
        cm,
        json!({"data": {"size": "XL", "shape": null, "weight": "3kg"}}),
    );
    assert_eq!(
        out["data"],
        json!({"color": "blue", "size": "XL", "weight": "3kg"})
    );
    // Untouched siblings survive.
    assert_eq!(out["metadata"], json!({"name": "settings"}));
    assert_eq!(out["kind"], "ConfigMap");
}

#[test]
fn deleting_an_absent_key_is_a_no_op() {
    let out = apply(
        json!({"data": {"a": "1"}}),
        json!({"data": {"zzz": null}, "extra": null}),
    );
    assert_eq!(out, json!({"data": {"a": "1"}}));
}

#[test]
fn labels_and_annotations_merge() {
    let obj = json!({"metadata": {
        "name": "x",
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"owner": "team-a"}
    }});
    let out = apply(
        obj,
        json!({"metadata": {
            "labels": {"tier": null, "track": "canary"},
            "annotations": {"owner": "team-b", "note": "hi"}
        }}),
    );
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "track": "canary"})
    );
    assert_eq!(
        out["metadata"]["annotations"],
        json!({"owner": "team-b", "note": "hi"})
    );
    assert_eq!(out["metadata"]["name"], "x");
}

#[test]
fn new_nested_object_drops_nulls_and_directives() {
    let out = apply(
        json!({"metadata": {"name": "x"}}),
        json!({"metadata": {"labels": {"a": "1", "b": null}},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [
            {"name": "GONE", "$patch": "delete"},
            {"name": "KEEP", "value": "v", "valueFrom": null}
        ]}]}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c", "image": "i", "env": [{"name": "KEEP", "value": "v"}]}])
    );
    assert_no_directives(&out);
}

#[test]
fn type_change_replaces_value() {
    let out = apply(
        json!({"data": {"a": "1"}, "other": {"x": 1}}),
        json!({"data": "flat", "other": [1, 2]}),
    );
    assert_eq!(out, json!({"data": "flat", "other": [1, 2]}));
}

#[test]
fn map_level_replace_directive_replaces_whole_map() {
    let obj = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}});
    let out = apply(
        obj,
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
    assert_eq!(out["metadata"]["name"], "x");
    assert_no_directives(&out);
}

#[test]
fn top_level_replace_directive_replaces_object() {
    let out = apply(
        json!({"a": 1, "b": {"c": 2}}),
        json!({"$patch": "replace", "z": 9}),
    );
    assert_eq!(out, json!({"z": 9}));
}

#[test]
fn map_level_delete_directive_empties_map() {
    // Upstream keeps the field but empties it.
    let obj = json!({"metadata": {"name": "x", "labels": {"a": "1"}}});
    let out = apply(obj, json!({"metadata": {"labels": {"$patch": "delete"}}}));
    assert_eq!(out["metadata"], json!({"name": "x", "labels": {}}));

    // On a field that does not exist yet, nothing is created.
    let out = apply(
        json!({"metadata": {"name": "x"}}),
        json!({"metadata": {"annotations": {"$patch": "delete", "k": "v"}}}),
    );
    assert_eq!(out["metadata"], json!({"name": "x"}));
}

#[test]
fn replace_strategy_map_is_replaced() {
    let pod = json!({"spec": {"nodeSelector": {"zone": "a", "disk": "ssd"}}});
    let out = apply(pod, json!({"spec": {"nodeSelector": {"zone": "b"}}}));
    assert_eq!(out["spec"]["nodeSelector"], json!({"zone": "b"}));
}

// --- primitive merge lists ---------------------------------------------------

#[test]
fn finalizers_union_without_duplicates() {
    let obj = json!({"metadata": {"finalizers": ["a/one", "b/two"]}});
    let out = apply(
        obj,
        json!({"metadata": {"finalizers": ["b/two", "c/three"]}}),
    );
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["a/one", "b/two", "c/three"])
    );
}

#[test]
fn primitive_merge_follows_patch_order_for_mentioned_items() {
    // Items named by the patch take the patch's order; the server-only ones
    // are slotted back in front of a patch item only when both were on the
    // server and the server-only one came first.
    let obj = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let out = apply(obj, json!({"metadata": {"finalizers": ["d", "a"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["d", "a", "b", "c"]));

    let obj = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let out = apply(obj, json!({"metadata": {"finalizers": ["c", "x"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c", "x"]));
}

#[test]
fn delete_from_primitive_list() {
    let obj = json!({"metadata": {"finalizers": ["keep", "drop", "also-keep", "drop2"]}});
    let out = apply(
        obj,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["drop", "drop2", "absent"]}}),
    );
    assert_eq!(
        out["metadata"],
        json!({"finalizers": ["keep", "also-keep"]})
    );
}

#[test]
fn delete_from_primitive_list_with_additions_and_order() {
    // What a client-side apply sends when the manifest changes [a, b] into [b, c].
    let obj = json!({"metadata": {"finalizers": ["a", "b"]}});
    let out = apply(
        obj,
        json!({"metadata": {
            "$setElementOrder/finalizers": ["b", "c"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["c"]
        }}),
    );
    assert_eq!(out["metadata"], json!({"finalizers": ["b", "c"]}));
}

#[test]
fn delete_from_primitive_list_on_missing_field_is_a_no_op() {
    let obj = json!({"metadata": {"name": "x"}});
    let out = apply(
        obj,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(out, json!({"metadata": {"name": "x"}}));
}

// --- merge lists of objects ----------------------------------------------------

#[test]
fn owner_references_merge_by_uid() {
    let obj = json!({"metadata": {"ownerReferences": [
        {"uid": "u1", "kind": "ReplicaSet", "name": "rs-1", "controller": true},
        {"uid": "u2", "kind": "Deployment", "name": "dep"}
    ]}});
    let out = apply(
        obj,
        json!({"metadata": {"ownerReferences": [
            {"uid": "u2", "name": "dep-renamed"},
            {"uid": "u3", "kind": "Job", "name": "job"},
            {"uid": "u1", "controller": null}
        ]}}),
    );
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([
            {"uid": "u2", "kind": "Deployment", "name": "dep-renamed"},
            {"uid": "u3", "kind": "Job", "name": "job"},
            {"uid": "u1", "kind": "ReplicaSet", "name": "rs-1"}
        ])
    );
}

#[test]
fn owner_reference_deleted_by_directive() {
    let obj = json!({"metadata": {"ownerReferences": [
        {"uid": "u1", "name": "a"}, {"uid": "u2", "name": "b"}
    ]}});
    let out = apply(
        obj,
        json!({"metadata": {"ownerReferences": [{"uid": "u1", "$patch": "delete"}]}}),
    );
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "u2", "name": "b"}])
    );
}

#[test]
fn container_added_goes_first() {
    // Without $setElementOrder, elements the patch mentions take precedence
    // over server-only ones, and a brand-new element is not ordered against
    // anything on the server, so it lands in front (as upstream does).
    let out = apply(
        pod(),
        json!({"spec": {"containers": [{"name": "sidecar", "image": "log:2"}]}}),
    );
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["sidecar", "app", "proxy"]);
    assert_eq!(
        out["spec"]["containers"][0],
        json!({"name": "sidecar", "image": "log:2"})
    );
}

#[test]
fn container_modified_in_place_with_nested_merge() {
    let out = apply(
        pod(),
        json!({"spec": {"containers": [{
            "name": "app",
            "image": "app:2",
            "args": ["--c"],
            "env": [{"name": "LEVEL", "value": "5"}, {"name": "NEW", "value": "y"}]
        }]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "app", "image": "app:2",
             // args has no patch strategy, so it is replaced.
             "args": ["--c"],
             "env": [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "5"},
                     {"name": "NEW", "value": "y"}]},
            {"name": "proxy", "image": "envoy:1"}
        ])
    );
}

#[test]
fn container_deleted_by_directive() {
    let out = apply(
        pod(),
        json!({"spec": {"containers": [{"name": "proxy", "$patch": "delete"}]}}),
    );
    assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(out["spec"]["containers"][0]["name"], "app");
    assert_no_directives(&out);
}

#[test]
fn delete_directive_removes_all_duplicates() {
    let obj = json!({"spec": {"containers": [
        {"name": "a"}, {"name": "b", "image": "x"}, {"name": "a", "image": "dup"}
    ]}});
    let out = apply(
        obj,
        json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "b", "image": "x"}])
    );
}

#[test]
fn container_list_replaced_by_marker_element() {
    let out = apply(
        pod(),
        json!({"spec": {"containers": [
            {"$patch": "replace"},
            {"name": "only", "image": "solo:1", "args": null}
        ]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "only", "image": "solo:1"}])
    );
}

#[test]
fn replace_marker_alone_empties_list() {
    let out = apply(
        pod(),
        json!({"spec": {"containers": [{"$patch": "replace"}]}}),
    );
    assert_eq!(out["spec"]["containers"], json!([]));
}

#[test]
fn list_without_strategy_is_replaced() {
    let obj = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
    let out = apply(obj, json!({"spec": {"tolerations": [{"key": "c"}]}}));
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
}

#[test]
fn no_schema_merges_maps_and_replaces_lists() {
    let obj = pod();
    let patch =
        json!({"spec": {"containers": [{"name": "x"}]}, "metadata": {"labels": {"a": "b"}}});
    let out = strategic_merge_patch(&obj, &patch, None);
    assert_eq!(
        out,
        Ok(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "x"}]}
        }))
    );
}

#[test]
fn empty_merge_lists_stay_empty() {
    let obj = json!({"metadata": {"ownerReferences": []}});
    let out = apply(obj, json!({"metadata": {"ownerReferences": []}}));
    assert_eq!(out["metadata"]["ownerReferences"], json!([]));
}

#[test]
fn integer_merge_keys_match_across_number_forms() {
    let obj = json!({"spec": {"containers": [{"name": "a", "ports": [
        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}
    ]}]}});
    let out = apply(
        obj,
        json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80.0, "name": "http"}]}]}}),
    );
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80.0, "protocol": "TCP", "name": "http"}, {"containerPort": 443}])
    );
}

// --- $setElementOrder ------------------------------------------------------------

#[test]
fn set_element_order_reorders_existing_items() {
    let obj = json!({"spec": {"containers": [
        {"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"}
    ]}});
    let out = apply(
        obj,
        json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c", "image": "3"}, {"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
    );
    assert_no_directives(&out);
}

#[test]
fn set_element_order_keeps_server_only_items_near_their_neighbours() {
    // x and y were added on the server; the patch only knows a, b, c, d.
    let obj = json!({"spec": {"containers": [
        {"name": "a"}, {"name": "x"}, {"name": "b"}, {"name": "c"}, {"name": "y"}, {"name": "d"}
    ]}});
    let out = apply(
        obj,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "new"}, {"name": "d"}, {"name": "c"}],
            "containers": [{"name": "new", "image": "n"}]
        }}),
    );
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // Patch items follow the requested order. A server-only item is emitted
    // ahead of the next patch item only when that item was also on the server
    // and after it: x (1) precedes b (2); y (4) does not precede a (0) or the
    // never-seen "new", but does precede d (5).
    assert_eq!(names, ["x", "b", "a", "new", "y", "d", "c"]);
    assert_eq!(
        out["spec"]["containers"][3],
        json!({"name": "new", "image": "n"})
    );
}

#[test]
fn set_element_order_with_modification_and_deletion() {
    let obj = json!({"spec": {"containers": [
        {"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"}
    ]}});
    let out = apply(
        obj,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "33"}, {"name": "b", "$patch": "delete"}]
        }}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c", "image": "33"}, {"name": "a", "image": "1"}])
    );
}

#[test]
fn set_element_order_swap_container_keeps_server_sidecar_before_new_one() {
    // kubectl apply after the manifest swapped container "old" for "new";
    // "injected" was added on the server. Upstream measures server order on
    // the list after the deletion with the new element in the freed slot,
    // so "injected" stays ahead of "new".
    let obj = json!({"spec": {"containers": [
        {"name": "old"}, {"name": "main", "image": "m"}, {"name": "injected"}
    ]}});
    let out = apply(
        obj,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "main"}, {"name": "new"}],
            "containers": [{"name": "new", "image": "n"}, {"name": "old", "$patch": "delete"}]
        }}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "main", "image": "m"}, {"name": "injected"}, {"name": "new", "image": "n"}])
    );
}

#[test]
fn set_element_order_for_primitives() {
    let obj = json!({"metadata": {"finalizers": ["one", "two", "three", "server"]}});
    let out = apply(
        obj,
        json!({"metadata": {"$setElementOrder/finalizers": ["three", "one", "two"]}}),
    );
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["three", "one", "two", "server"])
    );
}

#[test]
fn set_element_order_on_absent_list_creates_it() {
    let out = apply(
        json!({"spec": {}}),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b"}, {"name": "a"}]
        }}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "b"}, {"name": "a"}])
    );
}

#[test]
fn set_element_order_must_cover_patch_items_in_order() {
    let obj = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let err = apply_err(
        obj.clone(),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b"}, {"name": "a"}]
        }}),
    );
    assert!(
        matches!(err, PatchError::InvalidSetElementOrder { .. }),
        "{err}"
    );

    let err = apply_err(
        obj,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "zzz"}]
        }}),
    );
    assert!(
        matches!(err, PatchError::InvalidSetElementOrder { .. }),
        "{err}"
    );
}

// --- $retainKeys -----------------------------------------------------------------

#[test]
fn retain_keys_drops_unlisted_fields() {
    // Switching a volume from emptyDir to a configMap source.
    let obj = json!({"spec": {"volumes": [
        {"name": "data", "emptyDir": {"medium": "Memory"}},
        {"name": "other", "hostPath": {"path": "/x"}}
    ]}});
    let out = apply(
        obj,
        json!({"spec": {"volumes": [{
            "name": "data",
            "$retainKeys": ["configMap", "name"],
            "configMap": {"name": "settings"}
        }]}}),
    );
    assert_eq!(
        out["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "settings"}},
            {"name": "other", "hostPath": {"path": "/x"}}
        ])
    );
    assert_no_directives(&out);
}

#[test]
fn retain_keys_rejects_patched_field_not_listed() {
    let obj = json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}});
    let err = apply_err(
        obj,
        json!({"spec": {"volumes": [{
            "name": "data", "$retainKeys": ["name"], "configMap": {"name": "c"}
        }]}}),
    );
    assert!(matches!(err, PatchError::InvalidRetainKeys { .. }), "{err}");
}

#[test]
fn retain_keys_must_be_list_of_strings() {
    let err = apply_err(json!({"a": 1}), json!({"$retainKeys": "a"}));
    assert!(matches!(err, PatchError::InvalidRetainKeys { .. }));
    let err = apply_err(json!({"a": 1}), json!({"$retainKeys": [1]}));
    assert!(matches!(err, PatchError::InvalidRetainKeys { .. }));
}

// --- errors ---------------------------------------------------------------------------

#[test]
fn patch_must_be_object() {
    for patch in [json!([]), json!("x"), json!(null), json!(3)] {
        assert_eq!(
            strategic_merge_patch(&json!({}), &patch, None),
            Err(PatchError::PatchNotObject)
        );
    }
    assert_eq!(
        strategic_merge_patch(&json!([1]), &json!({}), None),
        Err(PatchError::OriginalNotObject)
    );
}

#[test]
fn unknown_patch_directive_is_rejected() {
    let err = apply_err(json!({"data": {}}), json!({"data": {"$patch": "explode"}}));
    assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err}");
    assert!(err.to_string().contains(".data"), "{err}");

    let err = apply_err(json!({}), json!({"$patch": true}));
    assert!(matches!(err, PatchError::InvalidDirective { .. }));

    // "merge" is not a valid element directive either.
    let err = apply_err(
        pod(),
        json!({"spec": {"containers": [{"name": "app", "$patch": "merge"}]}}),
    );
    assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err}");
}

#[test]
fn merge_list_element_without_merge_key_is_rejected() {
    let err = apply_err(
        pod(),
        json!({"spec": {"containers": [{"image": "nameless"}]}}),
    );
    match &err {
        PatchError::MissingMergeKey {
            path, merge_key, ..
        } => {
            assert_eq!(path, ".spec.containers");
            assert_eq!(merge_key, "name");
        }
        other => panic!("unexpected {other}"),
    }
    // Also for a delete directive and for a list that does not exist yet.
    let err = apply_err(
        pod(),
        json!({"spec": {"containers": [{"$patch": "delete"}]}}),
    );
    assert!(matches!(err, PatchError::MissingMergeKey { .. }));
    let err = apply_err(
        json!({"metadata": {}}),
        json!({"metadata": {"ownerReferences": [{"name": "no-uid"}]}}),
    );
    assert!(matches!(err, PatchError::MissingMergeKey { .. }));
}

#[test]
fn merge_list_of_objects_needs_schema_merge_key() {
    let err = apply_err(
        json!({"spec": {"unkeyed": [{"a": 1}]}}),
        json!({"spec": {"unkeyed": [{"a": 2}]}}),
    );
    assert!(matches!(err, PatchError::NoMergeKey { .. }), "{err}");
}

#[test]
fn mixed_or_nested_merge_lists_are_rejected() {
    let err = apply_err(
        json!({"metadata": {"finalizers": ["a"]}}),
        json!({"metadata": {"finalizers": [{"x": 1}]}}),
    );
    assert!(matches!(err, PatchError::MixedListElements { .. }), "{err}");
    let err = apply_err(
        json!({"metadata": {"finalizers": ["a"]}}),
        json!({"metadata": {"finalizers": [["b"]]}}),
    );
    assert!(matches!(err, PatchError::ListOfLists { .. }), "{err}");
}

#[test]
fn malformed_directive_payloads_are_rejected() {
    let err = apply_err(
        pod(),
        json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
    );
    assert!(
        matches!(err, PatchError::InvalidSetElementOrder { .. }),
        "{err}"
    );

    let err = apply_err(
        pod(),
        json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
    );
    assert!(matches!(err, PatchError::MissingMergeKey { .. }), "{err}");

    let err = apply_err(
        json!({"metadata": {"finalizers": ["a"]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
    );
    assert!(
        matches!(err, PatchError::InvalidDeleteFromPrimitiveList { .. }),
        "{err}"
    );

    let err = apply_err(json!({}), json!({"$setElementOrder": []}));
    assert!(
        matches!(err, PatchError::MalformedDirectiveKey { .. }),
        "{err}"
    );
    let err = apply_err(json!({}), json!({"$deleteFromPrimitiveList/": []}));
    assert!(
        matches!(err, PatchError::MalformedDirectiveKey { .. }),
        "{err}"
    );
}

#[test]
fn errors_render_as_readable_messages() {
    let err = apply_err(pod(), json!({"spec": {"containers": [{"image": "x"}]}}));
    let msg = err.to_string();
    assert!(msg.contains("merge key \"name\""), "{msg}");
    assert!(msg.contains(".spec.containers"), "{msg}");
}

// --- client-side apply ---------------------------------------------------------------

#[test]
fn kubectl_apply_three_way_patch_for_configmap() {
    const LAST: &str = "kubectl.kubernetes.io/last-applied-configuration";
    let old_applied = r#"{"apiVersion":"v1","data":{"greeting":"hello","mode":"fast"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"app-config","namespace":"default"}}"#;
    let new_applied = r#"{"apiVersion":"v1","data":{"greeting":"hi","retries":"3"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"app-config","namespace":"default"}}"#;
    let live = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "app-config",
            "namespace": "default",
            "uid": "0b8e7c1e-1111-4a4a-9c9c-222233334444",
            "resourceVersion": "812",
            "annotations": {LAST: old_applied, "team": "ops"},
            "labels": {"added-by": "someone-else"}
        },
        "data": {"greeting": "hello", "mode": "fast", "manual": "keep-me"}
    });
    // The patch kubectl computes from (last applied, new manifest, live):
    // "mode" was dropped from the manifest so it is nulled, "greeting" changed,
    // "retries" is new, and the annotation carries the new manifest.
    let patch = json!({
        "data": {"greeting": "hi", "mode": null, "retries": "3"},
        "metadata": {"annotations": {LAST: new_applied}}
    });
    let out = apply(live, patch);
    assert_eq!(
        out,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "app-config",
                "namespace": "default",
                "uid": "0b8e7c1e-1111-4a4a-9c9c-222233334444",
                "resourceVersion": "812",
                "annotations": {LAST: new_applied, "team": "ops"},
                "labels": {"added-by": "someone-else"}
            },
            "data": {"greeting": "hi", "manual": "keep-me", "retries": "3"}
        })
    );
}

#[test]
fn result_key_order_is_stable() {
    let out = apply(
        json!({"b": 1, "a": {"y": 1, "x": 2}, "c": 3}),
        json!({"a": {"x": 5, "w": 0}, "d": 4}),
    );
    let keys: Vec<&String> = out.as_object().into_iter().flat_map(|m| m.keys()).collect();
    assert_eq!(keys, ["b", "a", "c", "d"]);
    let inner: Vec<&String> = out["a"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .collect();
    assert_eq!(inner, ["y", "x", "w"]);
}

// --- property: plain maps behave like RFC 7386 --------------------------------------

/// Reference JSON merge patch (RFC 7386), written from the RFC's pseudo-code.
fn rfc7386(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.shift_remove(k);
        } else {
            let merged = rfc7386(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "data", "labels"]).prop_map(str::to_owned)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z]{0,4}".prop_map(Value::String),
    ]
}

/// Documents made only of objects and scalars (nulls included).
fn map_doc(with_lists: bool) -> impl Strategy<Value = Value> {
    let leaf = if with_lists {
        prop_oneof![4 => scalar(), 1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array)]
            .boxed()
    } else {
        scalar().boxed()
    };
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop::collection::vec((key(), inner), 0..5)
            .prop_map(|kvs| Value::Object(kvs.into_iter().collect()))
    })
}

fn object(with_lists: bool) -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), map_doc(with_lists)), 0..5)
        .prop_map(|kvs| Value::Object(kvs.into_iter().collect()))
}

proptest! {
    #[test]
    fn plain_map_patch_equals_json_merge_patch(original in object(true), patch in object(false)) {
        // The schema only gives list fields patch metadata, so for list-free
        // patches it must not change anything either.
        let s = schema();
        for schema in [None, Some(&s)] {
            let got = strategic_merge_patch(&original, &patch, schema);
            prop_assert_eq!(got, Ok(rfc7386(&original, &patch)));
        }
    }
}

// --- properties: arbitrary input, idempotence, merge lists -----------------------------

/// Keys that reach every code path: directives, merge lists (by key, primitive, retainKeys),
/// replace-strategy maps, plain fields.
fn any_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$deleteFromPrimitiveList/finalizers",
        "$deleteFromPrimitiveList/args",
        "$bogus",
        "metadata",
        "spec",
        "containers",
        "volumes",
        "finalizers",
        "ownerReferences",
        "nodeSelector",
        "name",
        "uid",
        "image",
        "args",
        "env",
        "unkeyed",
        "tolerations",
        "a",
    ])
    .prop_map(str::to_owned)
}

fn any_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i32..3).prop_map(|n| json!(n)),
        prop::sample::select(vec!["replace", "delete", "merge", "a", "b", "x", ""])
            .prop_map(|s| json!(s)),
    ]
}

/// Any JSON shape under the schema's field names; `directives` lets `$…` keys in (patches;
/// stored objects cannot hold them: built-in keys are qualified names or schema fields).
fn any_doc(directives: bool) -> impl Strategy<Value = Value> {
    any_scalar().prop_recursive(5, 48, 5, move |inner| {
        let key = any_key().prop_filter("no directive keys in stored objects", move |k| {
            directives || !k.starts_with('$')
        });
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..5)
                .prop_map(|kvs| Value::Object(kvs.into_iter().collect())),
        ]
    })
}

fn container() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["app", "proxy", "init", "side"]),
        prop::option::of(prop::sample::select(vec!["img:1", "img:2"])),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["--a", "--b"]),
            0..3,
        )),
    )
        .prop_map(|(name, image, args)| {
            let mut c = json!({"name": name});
            if let Some(i) = image {
                c["image"] = json!(i);
            }
            if let Some(a) = args {
                c["args"] = json!(a);
            }
            c
        })
}

/// Well-formed pods: containers unique by name, a primitive merge list, labels.
fn pod_doc() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(container(), 0..4),
        prop::collection::btree_set(prop::sample::select(vec!["f1", "f2", "f3"]), 0..3),
        prop::collection::btree_map(
            prop::sample::select(vec!["app", "tier"]),
            prop::sample::select(vec!["x", "y"]),
            0..2,
        ),
    )
        .prop_map(|(mut cs, fins, labels)| {
            let mut seen = std::collections::HashSet::new();
            cs.retain(|c| seen.insert(c["name"].as_str().unwrap_or("").to_string()));
            json!({"metadata": {"name": "p", "finalizers": fins, "labels": labels},
                   "spec": {"containers": cs}})
        })
}

/// Well-formed patches of such pods: merges by name, `$patch: delete` of an element,
/// primitive list additions and `$deleteFromPrimitiveList`, label deletions.
fn pod_patch() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(container(), 0..3),
        prop::option::of(prop::sample::select(vec!["app", "proxy", "init", "side"])),
        prop::collection::btree_set(prop::sample::select(vec!["f1", "f2", "f4"]), 0..2),
        prop::collection::btree_set(prop::sample::select(vec!["f2", "f3"]), 0..2),
        prop::option::of(prop::sample::select(vec!["app", "tier", "new"])),
    )
        .prop_map(|(mut cs, delete, add, remove, unlabel)| {
            let mut seen = std::collections::HashSet::new();
            cs.retain(|c| seen.insert(c["name"].as_str().unwrap_or("").to_string()));
            if let Some(d) = delete.filter(|d| !seen.contains(*d)) {
                cs.push(json!({"name": d, "$patch": "delete"}));
            }
            let mut p = json!({"spec": {"containers": cs}, "metadata": {}});
            let add: Vec<&str> = add.into_iter().filter(|a| !remove.contains(a)).collect();
            if !add.is_empty() {
                p["metadata"]["finalizers"] = json!(add);
            }
            if !remove.is_empty() {
                p["metadata"]["$deleteFromPrimitiveList/finalizers"] = json!(remove);
            }
            if let Some(l) = unlabel {
                p["metadata"]["labels"] = json!({l: null});
            }
            p
        })
}

fn assert_no_known_directives(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let known = k == DIRECTIVE
                    || k == RETAIN_KEYS
                    || k.starts_with(SET_ORDER_PREFIX)
                    || k.starts_with(DELETE_PRIMITIVE_PREFIX);
                assert!(!known, "directive {k} leaked into {v}");
                assert_no_known_directives(child);
            }
        }
        Value::Array(a) => a.iter().for_each(assert_no_known_directives),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a client sends, the patch either applies or is refused with a PatchError
    /// (a 400); it never panics and never leaks a directive into the result.
    #[test]
    fn any_input_applies_or_is_refused(original in any_doc(false), patch in any_doc(true)) {
        let s = schema();
        for schema in [None, Some(&s)] {
            if let Ok(out) = strategic_merge_patch(&original, &patch, schema) {
                // Unknown `$` keys are ordinary fields (as upstream); known directives never
                // reach the result.
                assert_no_known_directives(&out);
            }
        }
    }

    /// Applying the same well-formed patch twice changes nothing the second time.
    #[test]
    fn well_formed_patches_are_idempotent(original in pod_doc(), patch in pod_patch()) {
        let once = strategic_merge_patch(&original, &patch, Some(&schema()));
        let once = once.expect("well-formed patch applies");
        let twice = strategic_merge_patch(&once, &patch, Some(&schema())).expect("applies again");
        prop_assert_eq!(twice, once);
    }

    /// Merge lists merge by key: every patched container carries the patched fields, deleted
    /// ones are gone, untouched ones survive unchanged; primitive lists gain and lose exactly
    /// what the patch says.
    #[test]
    fn merge_lists_merge_by_key(original in pod_doc(), patch in pod_patch()) {
        let out = strategic_merge_patch(&original, &patch, Some(&schema())).unwrap();
        let by_name = |doc: &Value| -> std::collections::BTreeMap<String, Value> {
            doc.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten()
                .map(|c| (c["name"].as_str().unwrap_or("").to_string(), c.clone()))
                .collect()
        };
        let (before, after, patched) = (by_name(&original), by_name(&out), by_name(&patch));
        for (name, p) in &patched {
            if p.get("$patch").is_some() {
                prop_assert!(!after.contains_key(name), "{} deleted", name);
                continue;
            }
            let got = &after[name];
            for (k, v) in p.as_object().unwrap() {
                prop_assert_eq!(&got[k], v);
            }
        }
        for (name, c) in &before {
            if !patched.contains_key(name) {
                prop_assert_eq!(after.get(name), Some(c));
            }
        }
        let strs = |v: Option<&Value>| -> std::collections::BTreeSet<String> {
            v.and_then(Value::as_array).into_iter().flatten()
                .filter_map(|s| s.as_str().map(str::to_string)).collect()
        };
        let fins = strs(out.pointer("/metadata/finalizers"));
        let mut want = strs(original.pointer("/metadata/finalizers"));
        want.extend(strs(patch.pointer("/metadata/finalizers")));
        for r in strs(patch.pointer("/metadata/$deleteFromPrimitiveList~1finalizers")) {
            want.remove(&r);
        }
        prop_assert_eq!(fins, want);
    }
}
