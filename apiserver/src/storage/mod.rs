//! Revisioned key-value storage in SQLite, in the spirit of kine: one table, every write gets the
//! next global revision, which clients see as `resourceVersion`.
//!
//! One thread owns the write connection and commits batches of concurrent requests in one
//! transaction (group commit); readers use their own read-only connections (WAL snapshots).
//! Committed events are fanned out to watchers through [`hub::Hub`].

mod cache;
pub mod hub;
mod sqlite;

use std::sync::Arc;

pub use hub::{Event, EventType, Hub};
pub use sqlite::{Store, StoreOptions};

/// A stored object as read: its key, revision, and JSON value (without `resourceVersion`).
#[derive(Clone, Debug)]
pub struct Row {
    pub key: String,
    pub rev: i64,
    pub create_rev: i64,
    pub value: Arc<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object already exists")]
    AlreadyExists,
    #[error("object not found")]
    NotFound,
    #[error("the object has been modified (expected revision {expected}, found {found})")]
    Conflict { expected: i64, found: i64 },
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match e.sqlite_error_code() {
            // The file system refuses (full, read-only, immutable, failing): not a bug of ours,
            // and writes work again once it accepts them (503, not 500; control-plane.md CP-147).
            Some(ErrorCode::DiskFull)
            | Some(ErrorCode::CannotOpen)
            | Some(ErrorCode::ReadOnly)
            | Some(ErrorCode::SystemIoFailure) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// One write. Revisions given as preconditions are the key's current revision.
#[derive(Debug)]
pub enum WriteOp {
    Create {
        key: String,
        value: serde_json::Value,
        /// Unix seconds after which the row is swept (Event TTL).
        lease_expires: Option<i64>,
    },
    Update {
        key: String,
        expected_rev: i64,
        value: serde_json::Value,
    },
    Delete {
        key: String,
        expected_rev: i64,
    },
}
