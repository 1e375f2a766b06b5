//! `rdd`: the Rancher Desktop Daemon command line.

mod svc;

use clap::{Parser, Subcommand};

/// rdd — the Rancher Desktop Daemon.
///
/// Environment: RDD_INSTANCE selects the instance (default 2); RDD_LOG_LEVEL sets the log level
/// (error, warn, info, debug, trace).
#[derive(Parser, Debug)]
#[command(name = "rdd", version, about, long_about)]
struct Cli {
    /// Log level: fatal, error, warn, info, debug, trace (default: RDD_LOG_LEVEL, else warn).
    #[arg(long = "log-level", global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the instance's control plane.
    #[command(subcommand, visible_alias = "service")]
    Svc(svc::SvcCommand),
}

fn init_logging(level: Option<&str>) {
    let level = level
        .map(str::to_string)
        .or_else(|| {
            std::env::var("RDD_LOG_LEVEL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "warn".into());
    let level = if level == "fatal" {
        "error".to_string()
    } else {
        level
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},hyper=warn,rustls=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rdd: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        match cli.command {
            Command::Svc(c) => svc::run(c).await,
        }
    });
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("rdd: {e:#}");
            std::process::exit(1);
        }
    }
}
