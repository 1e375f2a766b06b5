//! The image-controller: Image mirrors of the Docker images, through the docker-gateway only.
//!
//! - [`mirror`]: names, statuses and the delete decision table (pure);
//! - [`engine`]: the image side of the engine session (full sync, reconcile by reference,
//!   prune, sweep);
//! - [`reconcile`]: API-side deletion forwarding (untag by reference, never forced).

pub mod engine;
pub mod mirror;
pub mod reconcile;
