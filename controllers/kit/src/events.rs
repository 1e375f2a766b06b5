//! Kubernetes Events (events.k8s.io/v1) for the objects a controller reconciles. Events are
//! best-effort: a failure to publish is logged, never a reconcile error.

use kube::runtime::events::{Event, EventType, Recorder as KubeRecorder, Reporter};
use kube::{Client, Resource};

/// Longest note an Event may carry (1 KiB in the API); longer notes are cut on a character
/// boundary.
pub const MAX_NOTE_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Recorder {
    inner: KubeRecorder,
}

fn cut(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut end = MAX_NOTE_BYTES;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note[..end].to_string()
}

impl Recorder {
    /// `controller` is the reporting controller's name (e.g. `limavm-controller`).
    pub fn new(client: Client, controller: &str) -> Recorder {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        Recorder {
            inner: KubeRecorder::new(client, reporter),
        }
    }

    /// Publish a Normal (or Warning) event about `obj`.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(cut(note)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.inner.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let n = "é".repeat(600);
        let c = cut(&n);
        assert!(c.len() <= MAX_NOTE_BYTES);
        assert!(c.chars().all(|ch| ch == 'é'));
        assert_eq!(cut("short"), "short");
    }
}
