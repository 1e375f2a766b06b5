//! `rdd-bench`: measures rdd against baselines taken in the same run on the same machine.
//!
//! `rdd-bench apiserver` starts `rdd svc serve` (the `rdd` binary next to this one) in a
//! private HOME and reports, as a Markdown table: create throughput vs raw SQLite commits with
//! the same pragmas, watch delivery latency with 100 watchers, RSS with 10 000 objects, and the
//! time from process start to `/readyz`.
//!
//! `rdd-bench gateway` starts `docker-gateway` against the local Docker Engine and compares it
//! with direct bollard use in the same run.
//!
//! `rdd-bench app` measures App `spec.running` patch → `Settled=True` with both controllers and
//! the `limactl` stand-in.
//!
//! `rdd-bench containers` starts `rdd svc serve`, `docker-gateway` and `container-controller`
//! and reports the mirror figures of issue 7 against a bollard list+inspect floor.

mod apiserver;
mod app;
mod containers;
mod gateway;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rdd-bench",
    about = "rdd benchmarks (figures with same-run baselines)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The embedded API server: throughput, watch latency, memory, start-up.
    Apiserver(apiserver::Args),
    /// The docker-gateway against direct bollard use: event fan-out latency, list + inspect, RSS.
    Gateway(gateway::Args),
    /// App running patch → Settled=True with app-controller, limavm-controller and the stand-in.
    App(app::Args),
    /// The container-controller: cold sync vs the bollard floor, cost and latency per Docker
    /// event at N = 10, 100, 1000 mirrors, memory.
    Containers(containers::Args),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Apiserver(a) => apiserver::run(a).await,
        Cmd::Gateway(a) => gateway::run(a).await,
        Cmd::App(a) => app::run(a).await,
        Cmd::Containers(a) => containers::run(a).await,
    }
}
