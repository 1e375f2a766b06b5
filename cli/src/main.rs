//! `rdd`: the Rancher Desktop Daemon command line.

mod exit;
mod set;
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
    /// Set App properties (PROPERTY=VALUE…) and wait until the App is settled.
    Set(set::SetArgs),
    /// Start the VM and container engine (`rdd set running=true`).
    Start(set::WaitFlags),
    /// Stop the VM and container engine (`rdd set running=false`).
    Stop(set::WaitFlags),
    /// kubectl against this instance's API server (started when needed).
    #[command(disable_help_flag = true)]
    Ctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    /// kubectl with the caller's own KUBECONFIG.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},hyper=warn,rustls=warn,kube_client=off"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn with_instance<F, Fut>(f: F) -> anyhow::Result<i32>
where
    F: FnOnce(rdd_process::instance::Instance) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    let inst = rdd_process::instance::Instance::from_env().map_err(anyhow::Error::msg)?;
    f(inst).await
}

fn main() {
    // Die quietly on a closed pipe (`rdd svc status | head`), like other command-line tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
            Command::Kubectl { args } => set::kubectl(args, None),
            Command::Completion { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "rdd", &mut std::io::stdout());
                Ok(0)
            }
            Command::Set(a) => with_instance(|i| async move { set::set(&i, a).await }).await,
            Command::Start(w) => with_instance(|i| async move { set::start(&i, w).await }).await,
            Command::Stop(w) => with_instance(|i| async move { set::stop(&i, w).await }).await,
            Command::Ctl { args } => {
                with_instance(|i| async move { set::ctl(&i, args).await }).await
            }
        }
    });
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            let code = e.downcast_ref::<exit::ExitError>().map_or(1, |x| x.code);
            eprintln!("rdd: {e:#}");
            std::process::exit(code);
        }
    }
}
