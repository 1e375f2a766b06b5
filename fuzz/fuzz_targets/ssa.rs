//! Server-side apply over arbitrary live objects and configurations: apply by one manager, an
//! update by another, a forced re-apply. Errors (conflicts, invalid objects) are fine; panics
//! are not, and applying the same configuration twice changes nothing the second time.
//!
//! Input: two JSON documents separated by a NUL byte (live object, applied configuration).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdd_ssa::{Scope, apply, update};
use serde_json::Value;

const NOW: &str = "2026-01-01T00:00:00Z";

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (Ok(live), Ok(applied)) = (
        serde_json::from_slice::<Value>(&data[..split]),
        serde_json::from_slice::<Value>(&data[split + 1..]),
    ) else {
        return;
    };
    for scope in [Scope::All, Scope::ExcludeStatus] {
        let Ok(first) = apply(
            Some(&live),
            &applied,
            &[],
            "a",
            "v1",
            None,
            scope,
            false,
            None,
            NOW,
        ) else {
            continue;
        };
        let again = apply(
            Some(&first.object),
            &applied,
            &first.managed_fields,
            "a",
            "v1",
            None,
            scope,
            false,
            None,
            NOW,
        )
        .expect("re-applying what was just applied by the same manager cannot conflict");
        assert_eq!(again.object, first.object, "apply is not idempotent");
        let managed = update(
            Some(&first.object),
            &live,
            &first.managed_fields,
            "b",
            "v1",
            None,
            scope,
            None,
            NOW,
        );
        let _ = apply(
            Some(&live),
            &applied,
            &managed,
            "a",
            "v1",
            None,
            scope,
            true,
            None,
            NOW,
        );
    }
});
