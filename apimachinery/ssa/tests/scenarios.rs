//! Named apply/update scenarios against the test schema in `common`.

mod common;

use common::*;
use rdd_ssa::{Operation, Scope, SsaError, apply, update};
use serde_json::json;

#[test]
fn apply_creates_object_and_entry() {
    let cfg = obj(json!({"metadata": {"labels": {"app": "w"}}, "spec": {"replicas": 2}}));
    let out = apply_as(None, &cfg, &[], "alice", false, T0).unwrap();
    assert_eq!(out.object, cfg);
    assert_eq!(out.managed_fields.len(), 1);
    let e = &out.managed_fields[0];
    assert_eq!(
        (e.manager.as_str(), e.operation),
        ("alice", Operation::Apply)
    );
    assert_eq!(e.api_version, "example.com/v1");
    assert_eq!(e.time.as_deref(), Some(T0));
    assert_eq!(e.fields_type, "FieldsV1");
    assert_eq!(
        e.fields_v1.as_ref().unwrap(),
        &json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn reapplying_unchanged_config_changes_nothing() {
    let cfg = obj(json!({"spec": {"replicas": 2, "ports": [{"name": "http", "port": 80}]}}));
    let first = apply_as(None, &cfg, &[], "alice", false, T0).unwrap();
    let again = apply_as(
        Some(&first.object),
        &cfg,
        &first.managed_fields,
        "alice",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(again, first);
}

#[test]
fn conflicting_apply_names_other_manager_and_field() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"replicas": 3}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let err = apply_as(
        Some(&a.object),
        &obj(json!({"spec": {"replicas": 5, "image": "x"}})),
        &a.managed_fields,
        "bob",
        false,
        T1,
    )
    .unwrap_err();
    let SsaError::Conflicts(conflicts) = &err else {
        panic!("{err}")
    };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].manager, "alice");
    assert_eq!(conflicts[0].field, ".spec.replicas");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"alice\" using example.com/v1: .spec.replicas"
    );
}

#[test]
fn force_moves_ownership() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"replicas": 3, "image": "a"}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let b = apply_as(
        Some(&a.object),
        &obj(json!({"spec": {"replicas": 5}})),
        &a.managed_fields,
        "bob",
        true,
        T1,
    )
    .unwrap();
    assert_eq!(b.object["spec"], json!({"replicas": 5, "image": "a"}));
    assert_eq!(owned(&b.managed_fields, "alice"), vec![".spec.image"]);
    assert_eq!(owned(&b.managed_fields, "bob"), vec![".spec.replicas"]);
    // Losing a field does not re-stamp the loser's entry.
    let alice = b
        .managed_fields
        .iter()
        .find(|e| e.manager == "alice")
        .unwrap();
    assert_eq!(alice.time.as_deref(), Some(T0));
}

#[test]
fn equal_values_share_ownership_until_both_drop() {
    let cfg = obj(json!({"spec": {"replicas": 3}}));
    let a = apply_as(None, &cfg, &[], "alice", false, T0).unwrap();
    let b = apply_as(Some(&a.object), &cfg, &a.managed_fields, "bob", false, T1).unwrap();
    assert_eq!(owned(&b.managed_fields, "alice"), vec![".spec.replicas"]);
    assert_eq!(owned(&b.managed_fields, "bob"), vec![".spec.replicas"]);

    // Alice drops it: bob still owns it, so the value stays.
    let empty = obj(json!({}));
    let a2 = apply_as(
        Some(&b.object),
        &empty,
        &b.managed_fields,
        "alice",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(a2.object["spec"]["replicas"], 3);
    assert_eq!(managers(&a2.managed_fields), vec!["bob"]);

    // Changing a shared field conflicts with the co-owner.
    let c = apply_as(
        Some(&b.object),
        &obj(json!({"spec": {"replicas": 4}})),
        &b.managed_fields,
        "alice",
        false,
        T2,
    );
    assert!(matches!(c, Err(SsaError::Conflicts(ref v)) if v[0].manager == "bob"));

    // Bob drops it too: now nobody owns it and it is removed (with the
    // emptied spec).
    let b2 = apply_as(
        Some(&a2.object),
        &empty,
        &a2.managed_fields,
        "bob",
        false,
        T2,
    )
    .unwrap();
    assert!(b2.object.get("spec").is_none(), "{}", b2.object);
    assert!(b2.managed_fields.is_empty());
    assert_eq!(b2.object["metadata"]["name"], "w");
}

#[test]
fn dropping_a_field_keeps_unrelated_siblings_owned_by_others() {
    let a = apply_as(
        None,
        &obj(json!({"metadata": {"labels": {"a": "1", "b": "2"}}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let b = apply_as(
        Some(&a.object),
        &obj(json!({"metadata": {"labels": {"c": "3"}}})),
        &a.managed_fields,
        "bob",
        false,
        T1,
    )
    .unwrap();
    let a2 = apply_as(
        Some(&b.object),
        &obj(json!({"metadata": {"labels": {"a": "1"}}})),
        &b.managed_fields,
        "alice",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(a2.object["metadata"]["labels"], json!({"a": "1", "c": "3"}));
    assert_eq!(
        owned(&a2.managed_fields, "alice"),
        vec![".metadata.labels.a"]
    );
    let alice = a2
        .managed_fields
        .iter()
        .find(|e| e.manager == "alice")
        .unwrap();
    assert_eq!(alice.time.as_deref(), Some(T2));
    // Sorted by time within an operation: bob (T1) before alice (T2).
    assert_eq!(managers(&a2.managed_fields), vec!["bob", "alice"]);
}

#[test]
fn map_list_items_merge_by_key_and_are_removed_per_manager() {
    let a = apply_as(
        None,
        &obj(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let b = apply_as(
        Some(&a.object),
        &obj(json!({"status": {"conditions": [{"type": "Synced", "status": "False"}]}})),
        &a.managed_fields,
        "bob",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(
        b.object["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}])
    );
    assert_eq!(
        owned(&b.managed_fields, "bob"),
        vec![
            r#".status.conditions[type="Synced"]"#,
            r#".status.conditions[type="Synced"].status"#,
            r#".status.conditions[type="Synced"].type"#,
        ]
    );

    // Alice changes her item without touching bob's.
    let a2 = apply_as(
        Some(&b.object),
        &obj(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
        &b.managed_fields,
        "alice",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(a2.object["status"]["conditions"][0]["status"], "False");

    // Alice stops applying conditions: her item goes, bob's stays.
    let a3 = apply_as(
        Some(&a2.object),
        &obj(json!({})),
        &a2.managed_fields,
        "alice",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(
        a3.object["status"]["conditions"],
        json!([{"type": "Synced", "status": "False"}])
    );
    assert_eq!(managers(&a3.managed_fields), vec!["bob"]);
}

#[test]
fn map_list_item_survives_while_another_manager_owns_part_of_it() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"ports": [{"name": "http", "port": 80}]}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let b = apply_as(
        Some(&a.object),
        &obj(json!({"spec": {"ports": [{"name": "http", "port": 80}]}})),
        &a.managed_fields,
        "bob",
        false,
        T1,
    )
    .unwrap();
    let a2 = apply_as(
        Some(&b.object),
        &obj(json!({})),
        &b.managed_fields,
        "alice",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(
        a2.object["spec"]["ports"],
        json!([{"name": "http", "port": 80}])
    );
}

#[test]
fn new_map_list_items_append_in_applied_order() {
    let live =
        obj(json!({"spec": {"ports": [{"name": "b", "port": 2}, {"name": "a", "port": 1}]}}));
    let out = apply_as(
        Some(&live),
        &obj(
            json!({"spec": {"ports": [{"name": "d", "port": 4}, {"name": "a", "port": 9},
                                        {"name": "c", "port": 3}]}}),
        ),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let names: Vec<_> = out.object["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["port"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, vec![("b", 2), ("a", 9), ("d", 4), ("c", 3)]);
}

#[test]
fn set_lists_union_and_release_per_item() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"tags": ["x", "y"]}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let b = apply_as(
        Some(&a.object),
        &obj(json!({"spec": {"tags": ["z", "y"]}})),
        &a.managed_fields,
        "bob",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(b.object["spec"]["tags"], json!(["x", "y", "z"]));
    assert_eq!(
        owned(&b.managed_fields, "bob"),
        vec![r#".spec.tags[="y"]"#, r#".spec.tags[="z"]"#]
    );
    let a2 = apply_as(
        Some(&b.object),
        &obj(json!({})),
        &b.managed_fields,
        "alice",
        false,
        T2,
    )
    .unwrap();
    // "y" is still bob's.
    assert_eq!(a2.object["spec"]["tags"], json!(["y", "z"]));
}

#[test]
fn atomic_lists_and_maps_are_replaced_whole() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"args": ["a", "b"], "selector": {"x": "1", "y": "2"}}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    assert_eq!(
        owned(&a.managed_fields, "alice"),
        vec![".spec.args", ".spec.selector"]
    );
    // Same manager: plain replacement.
    let a2 = apply_as(
        Some(&a.object),
        &obj(json!({"spec": {"args": ["c"], "selector": {"z": "3"}}})),
        &a.managed_fields,
        "alice",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(
        a2.object["spec"],
        json!({"args": ["c"], "selector": {"z": "3"}})
    );
    // Another manager: the whole list is one field, so it conflicts.
    let err = apply_as(
        Some(&a2.object),
        &obj(json!({"spec": {"args": ["c", "d"]}})),
        &a2.managed_fields,
        "bob",
        false,
        T2,
    )
    .unwrap_err();
    let SsaError::Conflicts(c) = err else {
        panic!()
    };
    assert_eq!(c[0].field, ".spec.args");
}

#[test]
fn update_steals_ownership_then_apply_conflicts_with_it() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"replicas": 3, "image": "a"}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let mut edited = a.object.clone();
    edited["spec"]["replicas"] = json!(4);
    edited["spec"]["args"] = json!(["new"]);
    let mf = update_as(
        Some(&a.object),
        &edited,
        &a.managed_fields,
        "kubectl-edit",
        T1,
    );
    assert_eq!(owned(&mf, "alice"), vec![".spec.image"]);
    assert_eq!(
        owned(&mf, "kubectl-edit"),
        vec![".spec.args", ".spec.replicas"]
    );
    // Entries sort Apply before Update.
    assert_eq!(managers(&mf), vec!["alice", "kubectl-edit"]);
    assert_eq!(mf[1].operation, Operation::Update);
    assert_eq!(mf[1].time.as_deref(), Some(T1));

    let err = apply_as(
        Some(&edited),
        &obj(json!({"spec": {"replicas": 3, "image": "a"}})),
        &mf,
        "alice",
        false,
        T2,
    )
    .unwrap_err();
    let SsaError::Conflicts(c) = err else {
        panic!()
    };
    assert_eq!(
        (c[0].manager.as_str(), c[0].field.as_str()),
        ("kubectl-edit", ".spec.replicas")
    );

    // Removing a field in an update takes it from everyone.
    let mut trimmed = edited.clone();
    trimmed["spec"].as_object_mut().unwrap().remove("image");
    let mf2 = update_as(Some(&edited), &trimmed, &mf, "kubectl-edit", T2);
    assert_eq!(managers(&mf2), vec!["kubectl-edit"]);
}

#[test]
fn update_without_changes_adds_no_entry() {
    let o = obj(json!({"spec": {"replicas": 1}}));
    let mf = update_as(Some(&o), &o, &[], "noop", T0);
    assert!(mf.is_empty());
}

#[test]
fn update_entries_are_per_api_version() {
    let s = schema();
    let o1 = obj(json!({"spec": {"replicas": 1}}));
    let o2 = obj(json!({"spec": {"replicas": 1, "image": "i"}}));
    let mf = update(
        None,
        &o1,
        &[],
        "ctl",
        "example.com/v1",
        None,
        Scope::All,
        Some(&s),
        T0,
    );
    let mf = update(
        Some(&o1),
        &o2,
        &mf,
        "ctl",
        "example.com/v2",
        None,
        Scope::All,
        Some(&s),
        T1,
    );
    assert_eq!(mf.len(), 2);
    assert_eq!(mf[0].api_version, "example.com/v1");
    assert_eq!(mf[1].api_version, "example.com/v2");
}

#[test]
fn exclude_status_ignores_applied_status() {
    let s = schema();
    let live = obj(json!({"spec": {"replicas": 1}, "status": {"phase": "Running"}}));
    let cfg = obj(json!({"spec": {"replicas": 2}, "status": {"phase": "Bogus"}}));
    let out = apply(
        Some(&live),
        &cfg,
        &[],
        "alice",
        "example.com/v1",
        None,
        Scope::ExcludeStatus,
        false,
        Some(&s),
        T0,
    )
    .unwrap();
    assert_eq!(out.object["status"], json!({"phase": "Running"}));
    assert_eq!(out.object["spec"]["replicas"], 2);
    assert_eq!(owned(&out.managed_fields, "alice"), vec![".spec.replicas"]);

    // On create the applied status is dropped as well.
    let created = apply(
        None,
        &cfg,
        &[],
        "alice",
        "example.com/v1",
        None,
        Scope::ExcludeStatus,
        false,
        Some(&s),
        T0,
    )
    .unwrap();
    assert!(created.object.get("status").is_none());
}

#[test]
fn only_status_keeps_live_spec() {
    let s = schema();
    let live = obj(json!({"spec": {"replicas": 1}}));
    let cfg = obj(json!({"spec": {"replicas": 9}, "status": {"phase": "Ready"}}));
    let out = apply(
        Some(&live),
        &cfg,
        &[],
        "ctrl",
        "example.com/v1",
        Some("status"),
        Scope::OnlyStatus,
        false,
        Some(&s),
        T0,
    )
    .unwrap();
    assert_eq!(out.object["spec"]["replicas"], 1);
    assert_eq!(out.object["status"]["phase"], "Ready");
    let e = &out.managed_fields[0];
    assert_eq!(e.subresource.as_deref(), Some("status"));
    assert_eq!(owned(&out.managed_fields, "ctrl"), vec![".status.phase"]);

    // The same manager on the main resource is a separate entry.
    let main = apply(
        Some(&out.object),
        &obj(json!({"spec": {"replicas": 1}})),
        &out.managed_fields,
        "ctrl",
        "example.com/v1",
        None,
        Scope::ExcludeStatus,
        false,
        Some(&s),
        T1,
    )
    .unwrap();
    assert_eq!(main.managed_fields.len(), 2);
    assert_eq!(main.object["status"]["phase"], "Ready");
}

#[test]
fn status_update_does_not_touch_spec_ownership() {
    let s = schema();
    let old = obj(json!({"spec": {"replicas": 1}}));
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(5);
    new["status"] = json!({"phase": "Up"});
    let mf = update(
        Some(&old),
        &new,
        &[],
        "ctrl",
        "example.com/v1",
        Some("status"),
        Scope::OnlyStatus,
        Some(&s),
        T0,
    );
    assert_eq!(owned(&mf, "ctrl"), vec![".status", ".status.phase"]);
}

#[test]
fn duplicate_map_keys_in_applied_config_are_invalid() {
    let cfg = obj(json!({"spec": {"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}}));
    let err = apply_as(None, &cfg, &[], "alice", false, T0).unwrap_err();
    let SsaError::Invalid(msg) = &err else {
        panic!("{err}")
    };
    assert!(
        msg.contains(r#"duplicate entries for key [name="a"]"#),
        "{msg}"
    );

    let missing = obj(json!({"spec": {"ports": [{"port": 1}]}}));
    assert!(matches!(
        apply_as(None, &missing, &[], "a", false, T0),
        Err(SsaError::Invalid(_))
    ));
}

#[test]
fn duplicate_keys_in_live_object_are_tolerated() {
    let live =
        obj(json!({"spec": {"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}}));
    let out = apply_as(
        Some(&live),
        &obj(json!({"spec": {"ports": [{"name": "a", "port": 3}]}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    assert_eq!(
        out.object["spec"]["ports"],
        json!([{"name": "a", "port": 3}])
    );
}

#[test]
fn null_in_applied_config_unsets_the_field() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"replicas": 3, "image": "a"}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let out = apply_as(
        Some(&a.object),
        &obj(json!({"spec": {"replicas": 3, "image": null}})),
        &a.managed_fields,
        "alice",
        false,
        T1,
    )
    .unwrap();
    assert_eq!(out.object["spec"], json!({"replicas": 3}));
    assert_eq!(
        owned(&out.managed_fields, "alice"),
        vec![".spec.image", ".spec.replicas"]
    );
    // Unsetting a field another manager set is a change, so it conflicts.
    let err = apply_as(
        Some(&a.object),
        &obj(json!({"spec": {"image": null}})),
        &a.managed_fields,
        "bob",
        false,
        T1,
    );
    assert!(matches!(err, Err(SsaError::Conflicts(_))));
}

#[test]
fn server_set_metadata_is_never_owned() {
    let cfg = obj(json!({"metadata": {"uid": "u", "resourceVersion": "3", "labels": {"a": "b"}}}));
    let out = apply_as(None, &cfg, &[], "alice", false, T0).unwrap();
    assert_eq!(
        owned(&out.managed_fields, "alice"),
        vec![".metadata.labels.a"]
    );
}

#[test]
fn bad_managed_fields_fail_apply_but_not_update() {
    let bad = vec![rdd_ssa::ManagedFieldsEntry {
        manager: "x".into(),
        operation: Operation::Update,
        api_version: "v1".into(),
        time: None,
        fields_type: "FieldsV1".into(),
        fields_v1: Some(json!({"bogus": {}})),
        subresource: None,
    }];
    let o = obj(json!({"spec": {"replicas": 1}}));
    assert!(matches!(
        apply_as(Some(&o), &o, &bad, "a", false, T0),
        Err(SsaError::BadManagedFields { .. })
    ));
    let mut n = o.clone();
    n["spec"]["replicas"] = json!(2);
    assert_eq!(managers(&update_as(Some(&o), &n, &bad, "u", T0)), vec!["u"]);
}

#[test]
fn released_item_stays_with_its_key_while_an_updater_owns_part_of_it() {
    let a = apply_as(
        None,
        &obj(json!({"spec": {"ports": [{"name": "a", "port": 1}]}})),
        &[],
        "alice",
        false,
        T0,
    )
    .unwrap();
    let mut edited = a.object.clone();
    edited["spec"]["ports"][0]["port"] = json!(2);
    let mf = update_as(Some(&a.object), &edited, &a.managed_fields, "editor", T1);
    assert_eq!(owned(&mf, "editor"), vec![r#".spec.ports[name="a"].port"#]);
    let out = apply_as(Some(&edited), &obj(json!({})), &mf, "alice", false, T2).unwrap();
    assert_eq!(
        out.object["spec"]["ports"],
        json!([{"name": "a", "port": 2}])
    );
    assert_eq!(managers(&out.managed_fields), vec!["editor"]);
}

#[test]
fn schemaless_objects_merge_granularly_and_replace_lists() {
    let a = rdd_ssa::apply(
        None,
        &json!({"spec": {"a": {"b": 1, "c": 2}, "l": [1, 2]}}),
        &[],
        "alice",
        "v1",
        None,
        Scope::All,
        false,
        None,
        T0,
    )
    .unwrap();
    assert_eq!(
        owned(&a.managed_fields, "alice"),
        vec![".spec", ".spec.a", ".spec.a.b", ".spec.a.c", ".spec.l"]
    );
    let b = rdd_ssa::apply(
        Some(&a.object),
        &json!({"spec": {"a": {"b": 1}, "l": [3]}}),
        &a.managed_fields,
        "alice",
        "v1",
        None,
        Scope::All,
        false,
        None,
        T1,
    )
    .unwrap();
    assert_eq!(b.object, json!({"spec": {"a": {"b": 1}, "l": [3]}}));
}
