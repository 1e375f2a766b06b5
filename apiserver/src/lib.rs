//! rdd's embedded Kubernetes-compatible API server: HTTPS, authentication, discovery, OpenAPI,
//! get/list/watch and the write pipeline over a kine-style SQLite store.

pub mod admission;
pub mod auth;
pub mod authz;
pub mod builtin;
pub mod cel_rules;
pub mod celcheck;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod events;
pub mod gc;
pub mod handlers;
pub mod kubeconfig;
pub mod lifecycle;
pub mod meta;
pub mod metrics;
pub mod offline;
pub mod openapi;
pub mod passthrough;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod reviews;
pub mod selector;
pub mod server;
pub mod storage;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;
pub mod webhook;
pub mod write;

pub use server::{Config, Running, ServeError, start};
