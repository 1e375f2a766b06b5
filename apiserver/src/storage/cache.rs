//! The latest row of recently written keys, kept by the writer thread.
//!
//! A controller writes the same object several times in a row (create, status, conditions),
//! and every update reads the current row first: without this, each of those reads is a
//! SQLite query plus a JSON parse of the whole object, on a blocking thread. The writer is the
//! only process that changes rows, so an entry it puts after its transaction committed *is*
//! the latest row of that key until its next commit; readers never fill the cache, which keeps
//! that true without any revision bookkeeping (a reader's snapshot may already be stale). A
//! miss only costs the query it would have cost anyway.
//!
//! Values are the same `Arc`s the watch ring holds, so recent entries cost no extra memory;
//! the bound keeps older ones from pinning more than a few thousand objects.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::Row;

/// Entries kept; a full sync applies a few dozen objects at once, so this is ample.
pub const CAPACITY: usize = 2048;

#[derive(Clone)]
struct Entry {
    rev: i64,
    create_rev: i64,
    /// `None`: the key's latest row is a deletion.
    value: Option<Arc<Value>>,
}

pub struct RowCache {
    entries: Mutex<hashlink::LruCache<String, Entry>>,
}

/// What the cache knows of a key.
pub enum Lookup {
    Unknown,
    Deleted,
    Live(Row),
}

impl RowCache {
    pub fn new(capacity: usize) -> RowCache {
        RowCache {
            entries: Mutex::new(hashlink::LruCache::new(capacity.max(1))),
        }
    }

    pub fn get(&self, key: &str) -> Lookup {
        let Ok(mut entries) = self.entries.lock() else {
            return Lookup::Unknown;
        };
        match entries.get(key) {
            None => Lookup::Unknown,
            Some(Entry { value: None, .. }) => Lookup::Deleted,
            Some(Entry {
                rev,
                create_rev,
                value: Some(v),
            }) => Lookup::Live(Row {
                key: key.to_string(),
                rev: *rev,
                create_rev: *create_rev,
                value: v.clone(),
            }),
        }
    }

    /// The value of `key` at exactly `rev`, when that is what the cache holds.
    pub fn value_at(&self, key: &str, rev: i64) -> Option<Arc<Value>> {
        let mut entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|e| e.rev == rev)
            .and_then(|e| e.value.clone())
    }

    /// Record a committed row. Only the writer thread calls this, after its commit.
    pub fn put(&self, key: &str, rev: i64, create_rev: i64, value: Option<Arc<Value>>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                key.to_string(),
                Entry {
                    rev,
                    create_rev,
                    value,
                },
            );
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn holds_the_latest_row_tombstones_and_evicts_the_oldest() {
        let c = RowCache::new(2);
        assert!(matches!(c.get("a"), Lookup::Unknown));
        c.put("a", 1, 1, Some(Arc::new(json!({"v": 1}))));
        c.put("a", 3, 1, Some(Arc::new(json!({"v": 2}))));
        match c.get("a") {
            Lookup::Live(r) => {
                assert_eq!((r.rev, r.create_rev), (3, 1));
                assert_eq!(*r.value, json!({"v": 2}));
            }
            _ => panic!("a is live"),
        }
        assert!(c.value_at("a", 1).is_none());
        assert_eq!(c.value_at("a", 3).as_deref(), Some(&json!({"v": 2})));
        c.put("b", 4, 4, None);
        assert!(matches!(c.get("b"), Lookup::Deleted));
        c.put("c", 5, 5, Some(Arc::new(json!({}))));
        // "a" was used least recently.
        assert!(matches!(c.get("a"), Lookup::Unknown));
        assert_eq!(c.len(), 2);
        assert!(!c.is_empty());
    }
}
