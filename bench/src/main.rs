//! `rdd-bench`: measures rdd against baselines taken in the same run on the same machine.
//!
//! Without a subcommand (`rdd-bench --n 1000`) it runs every section below in turn and prints
//! each section's table, every figure next to its goal (issue 12); `docs/benchmarks.md` holds
//! the output of the last run. A section alone:
//!
//! - `rdd-bench apiserver`: `rdd svc serve` in a private HOME: create throughput vs raw SQLite
//!   commits with the same pragmas, watch delivery latency with 100 watchers, RSS with 10 000
//!   objects, and the time from process start to `/readyz`.
//! - `rdd-bench gateway`: `docker-gateway` against the local Docker Engine compared with direct
//!   bollard use in the same run.
//! - `rdd-bench containers`: `rdd svc serve`, `docker-gateway` and `container-controller`: the
//!   mirror figures of issue 7 against a bollard list+inspect floor.
//! - `rdd-bench engine`: cold sync of volumes and image tags against their bollard floors, idle
//!   churn, the RSS of every process.
//! - `rdd-bench app`: App `spec.running` patch → `Settled=True` with both controllers and the
//!   `limactl` stand-in, the same through `rdd set`, and `rdd svc start` → ready.

/// Print a line of a section's output (a Markdown table row or heading) and keep the table rows
/// for `--json`.
macro_rules! out {
    ($($t:tt)*) => { crate::emit(format!($($t)*)) };
}

mod apiserver;
mod app;
mod containers;
mod engine;
mod gateway;

use std::sync::Mutex;
use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rdd-bench",
    about = "rdd benchmarks (figures with same-run baselines)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Without a subcommand: the N of the Docker-side figures (containers, volumes, image tags;
    /// the container event figures are taken at 10, 100 and N).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Print the figures as one JSON array (section, figure, value, goal) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// The embedded API server: throughput, watch latency, memory, start-up.
    Apiserver(apiserver::Args),
    /// The docker-gateway against direct bollard use: event fan-out latency, list + inspect, RSS.
    Gateway(gateway::Args),
    /// App running patch → Settled=True with app-controller, limavm-controller and the stand-in;
    /// `rdd set running=true` and `rdd svc start` from the command line.
    App(app::Args),
    /// The container-controller: cold sync vs the bollard floor, cost and latency per Docker
    /// event at N = 10, 100, 1000 mirrors, memory.
    Containers(containers::Args),
    /// Volumes and images: cold sync vs the bollard floors; idle churn; RSS of every process.
    Engine(engine::Args),
}

struct Output {
    json: bool,
    section: String,
    header: Vec<String>,
    rows: Vec<serde_json::Value>,
}

static OUTPUT: Mutex<Output> = Mutex::new(Output {
    json: false,
    section: String::new(),
    header: Vec::new(),
    rows: Vec::new(),
});

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect()
}

/// One output line: printed unless `--json`; table rows are kept as JSON objects keyed by the
/// table's header (`figure`, `value`, `baseline / goal`, …) with the section they belong to.
pub fn emit(text: String) {
    let mut o = OUTPUT.lock().unwrap_or_else(|p| p.into_inner());
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            o.section = h.to_string();
        } else if line.starts_with('|') && !line.starts_with("|---") {
            let c = cells(line);
            if c.first().map(String::as_str) == Some("figure") {
                o.header = c;
            } else {
                let mut row = serde_json::Map::new();
                row.insert("section".into(), o.section.clone().into());
                for (k, v) in o.header.iter().zip(c) {
                    row.insert(k.clone(), v.into());
                }
                o.rows.push(row.into());
            }
        }
    }
    if !o.json {
        println!("{text}");
    }
}

/// A section's arguments at their defaults.
fn defaults<A: clap::Args + clap::FromArgMatches>() -> anyhow::Result<A> {
    let cmd = A::augment_args(clap::Command::new("rdd-bench"));
    Ok(A::from_arg_matches(
        &cmd.try_get_matches_from(["rdd-bench"])?,
    )?)
}

async fn all(n: usize) -> anyhow::Result<()> {
    let t = Instant::now();
    out!("# rdd-bench --n {n}\n");
    out!("## API server\n");
    apiserver::run(defaults()?).await?;
    out!("\n## docker-gateway\n");
    let mut g: gateway::Args = defaults()?;
    g.containers = n;
    gateway::run(g).await?;
    out!("\n## container-controller\n");
    let mut c: containers::Args = defaults()?;
    c.n = n;
    containers::run(c).await?;
    out!("\n## volumes, images, idle churn, memory\n");
    let mut e: engine::Args = defaults()?;
    e.n = n;
    engine::run(e).await?;
    out!("\n## App, `rdd set`, `rdd svc start`\n");
    app::run(defaults()?).await?;
    out!("\nTotal time {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    OUTPUT.lock().unwrap_or_else(|p| p.into_inner()).json = cli.json;
    let r = run(cli).await;
    let o = OUTPUT.lock().unwrap_or_else(|p| p.into_inner());
    if o.json {
        println!("{}", serde_json::Value::Array(o.rows.clone()));
    }
    r
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        None => all(cli.n).await,
        Some(Cmd::Apiserver(a)) => apiserver::run(a).await,
        Some(Cmd::Gateway(a)) => gateway::run(a).await,
        Some(Cmd::App(a)) => app::run(a).await,
        Some(Cmd::Containers(a)) => containers::run(a).await,
        Some(Cmd::Engine(a)) => engine::run(a).await,
    }
}
