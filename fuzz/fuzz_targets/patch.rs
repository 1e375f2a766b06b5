//! Strategic merge patch (with and without patch-merge-key schemas), JSON merge patch and JSON
//! patch over arbitrary documents: errors, never panics.
//!
//! Input: two JSON documents separated by a NUL byte (original, patch).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "containers": {
                    "type": "array",
                    "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-patch-strategy": "merge",
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-patch-merge-key": "containerPort",
                            "x-kubernetes-patch-strategy": "merge",
                            "items": {"type": "object"}
                        },
                        "args": {"type": "array", "items": {"type": "string"}}
                    }}
                },
                "finalizers": {"type": "array", "x-kubernetes-patch-strategy": "merge", "items": {"type": "string"}},
                "volumes": {
                    "type": "array",
                    "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-patch-strategy": "merge,retainKeys",
                    "items": {"type": "object"}
                }
            }}
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (Ok(original), Ok(patch)) = (
        serde_json::from_slice::<Value>(&data[..split]),
        serde_json::from_slice::<Value>(&data[split + 1..]),
    ) else {
        return;
    };
    let schema = schema();
    let _ = rdd_strategic_merge::strategic_merge_patch(&original, &patch, None);
    if let Ok(merged) = rdd_strategic_merge::strategic_merge_patch(&original, &patch, Some(&schema))
    {
        // A successful patch result is an object again and serializes.
        assert!(merged.is_object());
        serde_json::to_vec(&merged).expect("serializes");
    }
    let mut merged = original.clone();
    json_patch::merge(&mut merged, &patch);
    if let Ok(ops) = serde_json::from_value::<json_patch::Patch>(patch) {
        let mut doc = original;
        let _ = json_patch::patch(&mut doc, &ops);
    }
});
