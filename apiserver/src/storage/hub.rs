//! Fan-out of committed events to watchers.
//!
//! Every committed event enters a ring of recent events (so a watch that resumes from a recent
//! revision needs no database read) and a broadcast channel. The broadcast channel is bounded per
//! receiver: a watcher that falls behind by more than its capacity sees `Lagged` and its watch is
//! closed with 410 Expired, so one slow client never holds memory for everyone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A committed change. `object` is the new value (for deletes: the last value), `prev` the value
/// before the change (absent for creates). Values carry no `resourceVersion`; it is `rev`.
#[derive(Debug)]
pub struct Event {
    pub rev: i64,
    pub key: String,
    pub kind: EventType,
    pub object: Arc<serde_json::Value>,
    pub prev: Option<Arc<serde_json::Value>>,
    /// The object as served in JSON, encoded once for every watcher that wants it as is.
    pub encoded: std::sync::OnceLock<bytes::Bytes>,
}

pub struct Hub {
    ring: Mutex<VecDeque<Arc<Event>>>,
    ring_capacity: usize,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Hub {
    pub fn new(ring_capacity: usize, watcher_queue: usize) -> Hub {
        let (tx, _) = broadcast::channel(watcher_queue.max(1));
        Hub {
            ring: Mutex::new(VecDeque::with_capacity(ring_capacity)),
            ring_capacity,
            tx,
        }
    }

    pub fn publish(&self, events: Vec<Arc<Event>>) {
        if let Ok(mut ring) = self.ring.lock() {
            for ev in &events {
                if ring.len() == self.ring_capacity {
                    ring.pop_front();
                }
                ring.push_back(ev.clone());
            }
        }
        for ev in events {
            // No receivers is fine: nobody watches.
            let _ = self.tx.send(ev);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn watcher_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Events with revision > `after` if the ring still covers that point, else `None`.
    pub fn since(&self, after: i64) -> Option<Vec<Arc<Event>>> {
        let ring = self.ring.lock().ok()?;
        match ring.front() {
            // The ring covers `after` when its oldest event is at most one past it.
            Some(front) if front.rev <= after + 1 => {
                Some(ring.iter().filter(|e| e.rev > after).cloned().collect())
            }
            _ => None,
        }
    }

    /// Oldest revision in the ring; watches from before it must read the database.
    pub fn oldest(&self) -> Option<i64> {
        self.ring.lock().ok()?.front().map(|e| e.rev)
    }
}
