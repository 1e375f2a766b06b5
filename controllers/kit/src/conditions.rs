//! Condition updates with the upstream "set status condition" semantics (resources.md §0.2):
//! append when new; `lastTransitionTime` moves only when `status` changes; reason, message and
//! observedGeneration are always overwritten; the caller learns whether anything changed so an
//! unchanged reconcile writes nothing (R-APP-D3).

pub use rdd_api::conditions::{Condition, truncate_message};

/// The condition a writer wants, before times are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    pub type_: &'a str,
    pub status: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
    /// The generation of the object the decision was based on (R-ENG-I3, R-APP-S2); `None`
    /// where a kind's writer does not stamp one.
    pub observed_generation: Option<i64>,
}

/// Set `desired` in `conditions`; `now` is used when the status changes. Returns true when the
/// list changed.
pub fn set(conditions: &mut Vec<Condition>, desired: &Desired<'_>, now: &str) -> bool {
    let message = truncate_message(desired.message);
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        None => {
            conditions.push(Condition {
                type_: desired.type_.to_string(),
                status: desired.status.to_string(),
                observed_generation: desired.observed_generation,
                last_transition_time: now.to_string(),
                reason: desired.reason.to_string(),
                message,
            });
            true
        }
        Some(c) => {
            let before = c.clone();
            if c.status != desired.status {
                c.status = desired.status.to_string();
                c.last_transition_time = now.to_string();
            }
            c.reason = desired.reason.to_string();
            c.message = message;
            c.observed_generation = desired.observed_generation;
            *c != before
        }
    }
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Now as a condition timestamp (RFC 3339, seconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: &str, reason: &str, message: &str, generation: i64) -> Desired<'static> {
        Desired {
            type_: "Ready",
            status: Box::leak(status.to_string().into_boxed_str()),
            reason: Box::leak(reason.to_string().into_boxed_str()),
            message: Box::leak(message.to_string().into_boxed_str()),
            observed_generation: Some(generation),
        }
    }

    #[test]
    fn appends_then_transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        assert!(set(&mut c, &ready("False", "Waiting", "wait", 1), "t1"));
        assert_eq!(c[0].last_transition_time, "t1");
        // Reason, message and generation change; the transition time does not.
        assert!(set(
            &mut c,
            &ready("False", "StillWaiting", "wait more", 2),
            "t2"
        ));
        assert_eq!(
            (
                c[0].last_transition_time.as_str(),
                c[0].reason.as_str(),
                c[0].observed_generation
            ),
            ("t1", "StillWaiting", Some(2))
        );
        assert!(set(&mut c, &ready("True", "Done", "ok", 2), "t3"));
        assert_eq!(c[0].last_transition_time, "t3");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn r_app_d3_unchanged_condition_reports_no_change_over_ten_passes() {
        let mut c = Vec::new();
        set(&mut c, &ready("True", "Done", "ok", 3), "t1");
        for i in 0..10 {
            assert!(!set(
                &mut c,
                &ready("True", "Done", "ok", 3),
                &format!("later-{i}")
            ));
        }
        assert_eq!(c[0].last_transition_time, "t1");
    }

    #[test]
    fn r_app_s5_long_messages_are_truncated() {
        let mut c = Vec::new();
        let long = "x".repeat(40_000);
        set(&mut c, &ready("False", "Failed", &long, 1), "t");
        assert_eq!(
            c[0].message.chars().count(),
            rdd_api::conditions::MAX_MESSAGE_CHARS
        );
        // Setting the same long message again is not a change.
        assert!(!set(&mut c, &ready("False", "Failed", &long, 1), "t2"));
    }
}
