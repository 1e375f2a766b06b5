//! The volume-controller: Volume mirrors of the Docker volumes, through the docker-gateway only.
//!
//! - [`mirror`]: names and statuses (pure);
//! - [`engine`]: the volume side of the engine session (full sync, events, prune, sweep);
//! - [`reconcile`]: API-side deletion forwarding.

pub mod engine;
pub mod mirror;
pub mod reconcile;
