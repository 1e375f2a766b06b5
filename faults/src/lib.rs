//! The comparisons the fault suite (`faults/tests/`) judges the system by, as pure functions so
//! they can themselves be tested on states that must fail (issue 12, acceptance: "a check that
//! cannot fail is caught").
//!
//! - [`mirrors_vs_docker`]: the mirrors of one kind against what Docker reports, both as lists
//!   of `(key, state)` so a duplicated mirror is visible (a map would hide it).
//! - [`acknowledged_vs_stored`]: every write the API server acknowledged against what it stores
//!   after a fault; a later unacknowledged write may have landed (the client saw only an error),
//!   so a stored revision above the acknowledged one is fine, one below is a lost update.
//!
//! Both return every difference found, empty when the states agree; tests print them.

use std::collections::BTreeMap;
use std::fmt;

/// One way two states disagree.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Diff {
    /// Expected (in Docker, or acknowledged) but absent.
    Missing { key: String },
    /// Present on both sides with a different state (or an older revision).
    Stale {
        key: String,
        want: String,
        got: String,
    },
    /// Present more than once where one is expected.
    Duplicated { key: String, count: usize },
    /// Present but not expected (a mirror of nothing in Docker).
    Extra { key: String },
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diff::Missing { key } => write!(f, "missing {key}"),
            Diff::Stale { key, want, got } => write!(f, "stale {key}: want {want}, got {got}"),
            Diff::Duplicated { key, count } => write!(f, "duplicated {key} ({count}×)"),
            Diff::Extra { key } => write!(f, "extra {key}"),
        }
    }
}

/// Render a list of differences on one line (for assertion messages).
pub fn describe(diffs: &[Diff]) -> String {
    diffs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn counted(items: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in items {
        m.entry(k.as_str()).or_default().push(v.as_str());
    }
    m
}

/// Mirrors (key → observed state as the mirror records it) against Docker (key → state as
/// Docker reports it). Keys are the kind's identity: the container ID, the volume name, the
/// image `id NUL tag`. Docker never lists a key twice; a mirror key listed twice is a duplicate.
pub fn mirrors_vs_docker(docker: &[(String, String)], mirrors: &[(String, String)]) -> Vec<Diff> {
    let d = counted(docker);
    let m = counted(mirrors);
    let mut out = Vec::new();
    for (key, dstates) in &d {
        let want = dstates[0];
        match m.get(key) {
            None => out.push(Diff::Missing {
                key: key.to_string(),
            }),
            Some(ms) => {
                if ms.len() > 1 {
                    out.push(Diff::Duplicated {
                        key: key.to_string(),
                        count: ms.len(),
                    });
                }
                if let Some(got) = ms.iter().find(|s| **s != want) {
                    out.push(Diff::Stale {
                        key: key.to_string(),
                        want: want.to_string(),
                        got: got.to_string(),
                    });
                }
            }
        }
    }
    for (key, ms) in &m {
        if !d.contains_key(key) {
            out.push(Diff::Extra {
                key: key.to_string(),
            });
            if ms.len() > 1 {
                out.push(Diff::Duplicated {
                    key: key.to_string(),
                    count: ms.len(),
                });
            }
        }
    }
    out.sort();
    out
}

/// One write as a client saw it acknowledged, or one object as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub key: String,
    /// The resourceVersion the server answered with (or stores).
    pub rev: u64,
    /// The written content that the check compares (e.g. a ConfigMap's data, serialized).
    pub value: String,
}

impl Write {
    pub fn new(key: impl Into<String>, rev: u64, value: impl Into<String>) -> Write {
        Write {
            key: key.into(),
            rev,
            value: value.into(),
        }
    }
}

/// Acknowledged writes against the stored objects after a fault. For each key the last
/// acknowledged write (highest revision) must be stored: same revision and value, or a higher
/// revision (a write the client saw fail may still have committed). Missing, older (stale) and
/// doubly stored keys are reported; stored keys nobody acknowledged are not (their writes may
/// have committed without an answer).
pub fn acknowledged_vs_stored(acked: &[Write], stored: &[Write]) -> Vec<Diff> {
    let mut last: BTreeMap<&str, &Write> = BTreeMap::new();
    for w in acked {
        let e = last.entry(w.key.as_str()).or_insert(w);
        if w.rev > e.rev {
            *e = w;
        }
    }
    let mut by_key: BTreeMap<&str, Vec<&Write>> = BTreeMap::new();
    for s in stored {
        by_key.entry(s.key.as_str()).or_default().push(s);
    }
    let mut out = Vec::new();
    for (key, ws) in &by_key {
        if ws.len() > 1 {
            out.push(Diff::Duplicated {
                key: key.to_string(),
                count: ws.len(),
            });
        }
    }
    for (key, w) in last {
        let Some(ss) = by_key.get(key) else {
            out.push(Diff::Missing {
                key: key.to_string(),
            });
            continue;
        };
        for s in ss {
            let stale = s.rev < w.rev || (s.rev == w.rev && s.value != w.value);
            if stale {
                out.push(Diff::Stale {
                    key: key.to_string(),
                    want: format!("rev {} {}", w.rev, w.value),
                    got: format!("rev {} {}", s.rev, s.value),
                });
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn mirrors_equal_to_docker_is_no_difference() {
        let d = kv(&[("a", "running"), ("b", "exited")]);
        let m = kv(&[("b", "exited"), ("a", "running")]);
        assert!(mirrors_vs_docker(&d, &m).is_empty());
        assert!(mirrors_vs_docker(&[], &[]).is_empty());
    }

    #[test]
    fn a_missing_mirror_is_caught() {
        let d = kv(&[("a", "running"), ("b", "exited")]);
        let m = kv(&[("a", "running")]);
        assert_eq!(
            mirrors_vs_docker(&d, &m),
            vec![Diff::Missing { key: "b".into() }]
        );
    }

    #[test]
    fn a_stale_mirror_is_caught() {
        let d = kv(&[("a", "exited")]);
        let m = kv(&[("a", "running")]);
        assert_eq!(
            mirrors_vs_docker(&d, &m),
            vec![Diff::Stale {
                key: "a".into(),
                want: "exited".into(),
                got: "running".into()
            }]
        );
    }

    #[test]
    fn a_duplicated_mirror_is_caught_even_with_the_right_state() {
        let d = kv(&[("a", "running")]);
        let m = kv(&[("a", "running"), ("a", "running")]);
        assert_eq!(
            mirrors_vs_docker(&d, &m),
            vec![Diff::Duplicated {
                key: "a".into(),
                count: 2
            }]
        );
    }

    #[test]
    fn a_mirror_of_nothing_is_caught() {
        let d = kv(&[("a", "running")]);
        let m = kv(&[("a", "running"), ("gone", "exited"), ("gone", "exited")]);
        assert_eq!(
            mirrors_vs_docker(&d, &m),
            vec![
                Diff::Duplicated {
                    key: "gone".into(),
                    count: 2
                },
                Diff::Extra { key: "gone".into() },
            ]
        );
    }

    #[test]
    fn acknowledged_and_stored_agree() {
        let acked = [Write::new("a", 5, "1"), Write::new("a", 9, "2")];
        let stored = [Write::new("a", 9, "2"), Write::new("unacked", 10, "x")];
        assert!(acknowledged_vs_stored(&acked, &stored).is_empty());
        // A later write whose answer was lost may have committed.
        let stored = [Write::new("a", 12, "3")];
        assert!(acknowledged_vs_stored(&acked, &stored).is_empty());
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let acked = [Write::new("a", 5, "1"), Write::new("b", 6, "1")];
        let stored = [Write::new("a", 5, "1")];
        assert_eq!(
            acknowledged_vs_stored(&acked, &stored),
            vec![Diff::Missing { key: "b".into() }]
        );
    }

    #[test]
    fn a_stale_stored_object_is_caught() {
        // The second acknowledged update was lost: the store still has the first.
        let acked = [Write::new("a", 5, "1"), Write::new("a", 9, "2")];
        let stored = [Write::new("a", 5, "1")];
        let d = acknowledged_vs_stored(&acked, &stored);
        assert!(
            matches!(d.as_slice(), [Diff::Stale { key, .. }] if key == "a"),
            "{d:?}"
        );
        // Same revision, other content: also wrong.
        let stored = [Write::new("a", 9, "other")];
        assert_eq!(acknowledged_vs_stored(&acked, &stored).len(), 1);
    }

    #[test]
    fn a_duplicated_stored_object_is_caught() {
        let acked = [Write::new("a", 5, "1")];
        let stored = [Write::new("a", 5, "1"), Write::new("a", 5, "1")];
        assert_eq!(
            acknowledged_vs_stored(&acked, &stored),
            vec![Diff::Duplicated {
                key: "a".into(),
                count: 2
            }]
        );
    }

    #[test]
    fn describe_lists_every_difference() {
        let s = describe(&[
            Diff::Missing { key: "a".into() },
            Diff::Extra { key: "b".into() },
        ]);
        assert_eq!(s, "missing a; extra b");
    }
}
