//! `rdd svc`: the control plane of an instance.

pub mod control;
pub mod identities;
pub mod logfiles;
pub mod manifests;
pub mod selection;
pub mod serve;
pub mod supervise;
pub mod token;

use clap::{Args, Subcommand};

use rdd_process::instance::Instance;

#[derive(Subcommand, Debug)]
pub enum SvcCommand {
    /// Create the instance's control plane (args.json) without starting it.
    Create(control::ServeFlags),
    /// Start the control plane in the background (creating it when needed) and wait until ready.
    Start(control::StartArgs),
    /// Run the control plane in the foreground: API server plus the supervised gateway and
    /// controllers.
    Serve(serve::ServeArgs),
    /// Stop the control plane (SIGINT; controllers stop first).
    Stop(control::StopArgs),
    /// Stop the control plane and remove its directories.
    Delete {
        /// Deadline for stopping (Go duration; 0 = none).
        #[arg(long, default_value = "5m", value_parser = crate::exit::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Show whether the control plane exists and runs, and each supervised process.
    Status,
    /// Print the control plane's log.
    #[command(visible_alias = "log")]
    Logs(control::LogsArgs),
    /// Start the control plane if needed and print its admin kubeconfig.
    Config,
    /// Print the instance's paths (`table`, `json` or `shell`); with KEY only that value.
    Paths(PathsArgs),
    /// Bearer-token identities (users, ServiceAccounts, rdd's controllers).
    #[command(subcommand)]
    Token(token::TokenCommand),
}

#[derive(Args, Debug)]
pub struct PathsArgs {
    /// One key to print.
    pub key: Option<String>,
    /// Output format: table, json or shell.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

pub async fn run(cmd: SvcCommand, developer: bool) -> anyhow::Result<i32> {
    let inst = Instance::from_env().map_err(anyhow::Error::msg)?;
    match cmd {
        SvcCommand::Create(f) => {
            if !control::create(&inst, &f)? {
                tracing::info!("{:?} control plane already exists", inst.name());
            }
            Ok(0)
        }
        SvcCommand::Start(a) => control::start(&inst, &a).await,
        SvcCommand::Stop(a) => control::stop(&inst, &a).await,
        SvcCommand::Delete { timeout } => control::delete(&inst, timeout).await,
        SvcCommand::Status => control::status(&inst, developer),
        SvcCommand::Logs(a) => control::logs(&inst, &a).await,
        SvcCommand::Config => control::config(&inst).await,
        SvcCommand::Serve(a) => serve::run(inst, a).await,
        SvcCommand::Paths(a) => paths(&inst, a),
        SvcCommand::Token(c) => token::run(&inst, c),
    }
}

fn paths(inst: &Instance, a: PathsArgs) -> anyhow::Result<i32> {
    let all = inst.paths();
    let keys: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
    let selected: Vec<_> = match &a.key {
        Some(k) => {
            let Some(p) = all.iter().find(|(kk, _)| kk == k) else {
                anyhow::bail!("unknown key {k:?}; valid keys: {}", keys.join(", "));
            };
            vec![p.clone()]
        }
        None => all.clone(),
    };
    match a.output.as_str() {
        "table" if a.key.is_some() => println!("{}", selected[0].1.display()),
        "table" => {
            let w = selected.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in &selected {
                println!("{k:w$}  {}", v.display());
            }
        }
        "json" => {
            let m: serde_json::Map<String, serde_json::Value> = selected
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v.display().to_string())))
                .collect();
            println!("{}", serde_json::Value::Object(m));
        }
        "shell" => {
            for (k, v) in &selected {
                println!(
                    "export RDD_{}={:?}",
                    k.to_uppercase(),
                    v.display().to_string()
                );
            }
        }
        f => anyhow::bail!("unknown output format {f:?}; valid formats: table, json, or shell"),
    }
    Ok(0)
}
