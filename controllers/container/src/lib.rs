//! The container-controller: Container mirrors of the Docker containers, through the
//! docker-gateway only (never the Docker socket).
//!
//! - [`mirror`]: the Container status and conditions built from an inspect (pure);
//! - [`engine`]: the container side of the engine session (full sync, events, prune, sweep,
//!   `moby` and NS repair);
//! - [`docker_context`]: the instance's Docker CLI context while the engine runs;
//! - [`logs`]: the `logs` passthrough endpoint (WebSocket) of controller `engine`;
//! - [`reconcile`]: actions from the annotation and deletion forwarding, as a table.

pub mod docker_context;
pub mod engine;
pub mod logs;
pub mod mirror;
pub mod reconcile;
