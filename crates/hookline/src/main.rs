//! The `hookline` binary: one subcommand per part, and `serve` for all of
//! them in one process.

use clap::{Parser, Subcommand};
use hookline::config::{self, Config};
use hookline::{demo, server, telemetry};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "hookline",
    version,
    about = "Signed, retried webhook delivery from Kafka topics and HTTP ingest"
)]
struct Cli {
    /// TOML configuration file; environment variables HOOKLINE_* override it.
    #[arg(long, short, global = true, env = "HOOKLINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run ingest, creator, dispatcher and the API in one process.
    Serve,
    /// Run the creator: consume Kafka, deduplicate, fan out, enqueue (distributed mode).
    Creator,
    /// Run the dispatcher: deliver queued webhooks (distributed mode).
    Dispatcher,
    /// Run the admin and ingest API (distributed mode).
    Api,
    /// Apply database migrations and exit.
    Migrate,
    /// Start a server and a local HTTPS receiver, send sample events, and show deliveries, a retry and dead letters.
    Demo {
        /// Keep the server running after the demo until Ctrl-C.
        #[arg(long)]
        keep_running: bool,
    },
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values, secrets redacted.
    Check,
    /// Print the embedded, commented default configuration.
    Default,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config(ConfigCommand::Default) = cli.command {
        print!("{}", config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config(ConfigCommand::Check) = cli.command {
        println!("# configuration is valid\n{}", config.redacted_toml());
        return ExitCode::SUCCESS;
    }
    let mut log = config.log.clone();
    if matches!(cli.command, Command::Demo { .. }) {
        // The demo's own output tells the story; only problems are logged.
        log.level = "warn".into();
    }
    telemetry::init(&log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => run_role(config, server::Role::All).await,
            Command::Creator => run_role(config, server::Role::Creator).await,
            Command::Dispatcher => run_role(config, server::Role::Dispatcher).await,
            Command::Api => run_role(config, server::Role::Api).await,
            Command::Migrate => hookline::distributed::migrate(&config).await,
            Command::Demo { keep_running } => demo::run(config, keep_running).await,
            Command::Config(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Hookline failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_role(config: Config, role: server::Role) -> anyhow::Result<()> {
    let running = server::start(config, role).await?;
    wait_for_signal().await;
    tracing::info!("Shutdown requested; finishing in-flight deliveries");
    running.stop().await;
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler succeeds on Unix");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
