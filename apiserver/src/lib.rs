//! rdd's embedded Kubernetes-compatible API server.
pub mod storage;
