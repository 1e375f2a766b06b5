//! End-to-end tests: `rdd svc serve` as a real process, driven by kubectl v1.32 and v1.37,
//! kube-rs and raw HTTP.

mod harness;

mod api;
mod auth;
mod bad_input;
mod dashboards;
mod deploy;
mod durability;
mod engine_passthrough;
mod gateway_tls;
mod gc_restart;
mod kit;
mod kube_client;
mod kubectl;
mod limavm_admission;
mod observability;
mod owned;
mod packaging;
mod policy_params;
mod python;
mod rbac;
mod supervise;
mod webhooks;
