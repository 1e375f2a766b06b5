//! Property tests: FieldsV1 round trip, set algebra, apply idempotence.

mod common;

use common::*;
use proptest::prelude::*;
use rdd_ssa::{FieldSet, PathElement};
use serde_json::{Value, json};

fn element() -> impl Strategy<Value = PathElement> {
    prop_oneof![
        "[a-c]{1,2}".prop_map(PathElement::Field),
        ("[a-c]{1,2}", 0i64..3).prop_map(|(n, p)| PathElement::key([
            ("name", &Value::String(n)),
            ("port", &json!(p)),
        ])),
        prop_oneof![
            "[a-c]{0,2}".prop_map(Value::String),
            (0i64..5).prop_map(|i| json!(i)),
            Just(json!(true)),
        ]
        .prop_map(|v| PathElement::value(&v)),
        (0usize..4).prop_map(PathElement::Index),
    ]
}

fn field_set() -> impl Strategy<Value = FieldSet> {
    prop::collection::vec(prop::collection::vec(element(), 1..4), 0..8).prop_map(|paths| {
        let mut set = FieldSet::new();
        for p in paths {
            set.insert(&p);
        }
        set
    })
}

fn config() -> impl Strategy<Value = Value> {
    (
        prop::option::of(0i64..4),
        prop::collection::btree_map("[a-c]", "[x-z]", 0..3),
        prop::collection::btree_map("[a-d]", 0i64..3, 0..4),
        prop::collection::btree_set("[p-s]", 0..3),
        prop::option::of(prop::collection::vec("[a-b]", 0..3)),
        prop::collection::btree_map("[A-C]", "(True|False)", 0..3),
    )
        .prop_map(|(replicas, labels, ports, tags, args, conds)| {
            let mut spec = serde_json::Map::new();
            if let Some(r) = replicas {
                spec.insert("replicas".into(), json!(r));
            }
            if !ports.is_empty() {
                let ports: Vec<Value> = ports
                    .iter()
                    .map(|(n, p)| json!({"name": n, "port": p}))
                    .collect();
                spec.insert("ports".into(), Value::Array(ports));
            }
            if !tags.is_empty() {
                spec.insert("tags".into(), json!(tags));
            }
            if let Some(a) = args {
                spec.insert("args".into(), json!(a));
            }
            let conditions: Vec<Value> = conds
                .iter()
                .map(|(t, s)| json!({"type": t, "status": s}))
                .collect();
            obj(json!({
                "metadata": {"labels": labels},
                "spec": spec,
                "status": {"conditions": conditions}
            }))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn fields_v1_round_trips(set in field_set()) {
        let encoded = set.to_fields_v1();
        prop_assert_eq!(FieldSet::from_fields_v1(&encoded).unwrap(), set.clone());
        // Encoding is deterministic down to the text.
        let again = FieldSet::from_fields_v1(&encoded).unwrap().to_fields_v1();
        prop_assert_eq!(encoded.to_string(), again.to_string());
    }

    #[test]
    fn set_algebra_laws(a in field_set(), b in field_set(), c in field_set()) {
        prop_assert_eq!(a.union(&b), b.union(&a));
        prop_assert_eq!(a.intersection(&b), b.intersection(&a));
        prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
        prop_assert!(a.difference(&a).is_empty());
        prop_assert!(a.difference(&a.union(&b)).is_empty());
        prop_assert!(a.difference(&b).intersection(&b).is_empty());
        prop_assert_eq!(a.difference(&b).union(&a.intersection(&b)), a.clone());
        prop_assert_eq!(a.union(&b).difference(&b), a.difference(&b));
        prop_assert_eq!(a.intersection(&a), a.clone());
        prop_assert_eq!(a.union(&FieldSet::new()), a.clone());
        let members = a.union(&b).members().len();
        prop_assert_eq!(members, a.members().len() + b.difference(&a).members().len());
    }

    #[test]
    fn applying_twice_is_idempotent(first in config(), second in config(), force in any::<bool>()) {
        let a = apply_as(None, &first, &[], "alice", false, T0).unwrap();
        let Ok(b) = apply_as(Some(&a.object), &second, &a.managed_fields, "bob", force, T1) else {
            // Conflicts are a legitimate outcome without force.
            prop_assert!(!force);
            return Ok(());
        };
        let again = apply_as(Some(&b.object), &second, &b.managed_fields, "bob", force, T2).unwrap();
        prop_assert_eq!(&again, &b);
        // Alice re-applying her own config after bob is stable too, when it succeeds.
        if let Ok(a2) = apply_as(Some(&b.object), &first, &b.managed_fields, "alice", false, T2) {
            let a3 = apply_as(Some(&a2.object), &first, &a2.managed_fields, "alice", false, T2)
                .unwrap();
            prop_assert_eq!(a3, a2);
        }
    }

    #[test]
    fn applied_fields_end_up_in_the_object(cfg in config()) {
        let out = apply_as(None, &cfg, &[], "alice", false, T0).unwrap();
        let owned = rdd_ssa::fields_of(&out.object, Some(&schema()));
        let mine = out.managed_fields.first().map(|e| e.field_set().unwrap()).unwrap_or_default();
        prop_assert!(mine.difference(&owned).is_empty());
    }
}

/// Any JSON under the schema's field names (wrong types, nulls, duplicate map-list keys…).
fn any_doc() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..3).prop_map(|i| json!(i)),
        "[a-c]{0,2}".prop_map(Value::String),
    ];
    let key = prop::sample::select(vec![
        "metadata",
        "spec",
        "status",
        "labels",
        "finalizers",
        "replicas",
        "image",
        "ports",
        "name",
        "port",
        "args",
        "tags",
        "selector",
        "extra",
        "conditions",
        "type",
        "phase",
        "x",
    ]);
    leaf.prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kvs| {
                Value::Object(kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever is applied onto whatever is stored, apply answers Ok or an error (a 4xx);
    /// it never panics, and what it accepts it can apply again unchanged.
    #[test]
    fn any_input_applies_or_is_refused(live in any_doc(), applied in any_doc(), force in any::<bool>()) {
        let live = obj(live);
        let first = apply_as(None, &live, &[], "alice", false, T0);
        let (object, managed) = match first {
            Ok(o) => (o.object, o.managed_fields),
            Err(_) => (live.clone(), Vec::new()),
        };
        if let Ok(out) = apply_as(Some(&object), &applied, &managed, "bob", force, T1) {
            let again = apply_as(Some(&out.object), &applied, &out.managed_fields, "bob", force, T1);
            prop_assert_eq!(again.ok(), Some(out));
        }
    }

    /// A forced apply always succeeds, and the applier then owns every field it applied.
    #[test]
    fn forced_apply_wins_every_field(first in config(), second in config()) {
        let a = apply_as(None, &first, &[], "alice", false, T0).unwrap();
        let b = apply_as(Some(&a.object), &second, &a.managed_fields, "bob", true, T1).unwrap();
        let applied = rdd_ssa::fields_of(&second, Some(&schema()));
        let bob = b.managed_fields.iter().find(|e| e.manager == "bob")
            .map(|e| e.field_set().unwrap()).unwrap_or_default();
        let in_object = rdd_ssa::fields_of(&b.object, Some(&schema()));
        let leaves: Vec<Vec<PathElement>> = applied.members();
        for p in leaves {
            // Server-set identity fields are never owned.
            let path = rdd_ssa::path_string(&p);
            if path.starts_with(".apiVersion") || path.starts_with(".kind") || path.starts_with(".metadata.name") || path.starts_with(".metadata.namespace") {
                continue;
            }
            prop_assert!(bob.contains(&p), "bob owns {}", path);
            // An applied empty map or list is a member itself; in the object it may have
            // children another manager owns.
            let present = in_object.members().iter().any(|m| m.starts_with(&p));
            prop_assert!(present, "{} in the object", path);
        }
    }

    /// Without force, a conflict names only fields the other manager owns, and nothing is
    /// written; with no conflict the apply succeeds.
    #[test]
    fn conflicts_name_only_fields_another_manager_owns(first in config(), second in config()) {
        let a = apply_as(None, &first, &[], "alice", false, T0).unwrap();
        match apply_as(Some(&a.object), &second, &a.managed_fields, "bob", false, T1) {
            Ok(_) => {}
            Err(rdd_ssa::SsaError::Conflicts(cs)) => {
                let alice = owned(&a.managed_fields, "alice");
                prop_assert!(!cs.is_empty());
                for c in cs {
                    prop_assert_eq!(&c.manager, "alice");
                    prop_assert!(alice.contains(&c.field), "{} owned by alice: {:?}", c.field, alice);
                }
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}
