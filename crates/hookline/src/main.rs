//! The `hookline` binary: one subcommand per part, and `serve` for all of
//! them in one process.

use clap::{Parser, Subcommand};
use hookline::config::{self, Config};
use hookline::reload::Reloader;
use hookline::{demo, server, telemetry};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
    /// Run the egress gateway: sign and send attempts for dispatchers, and sign proxied 3scale webhook calls.
    Gateway,
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
    /// Manage the keys that encrypt signing secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Print a new random key as <id>:<base64>, to put first in secrets.keys.
    GenerateKey {
        /// Id of the key: 1 to 32 ASCII letters, digits, '-', '_' or '.'.
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Re-encrypt every stored signing secret with the first key of secrets.keys.
    Rotate,
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
    if let Command::Secrets(SecretsCommand::GenerateKey { id }) = &cli.command {
        return match hookline::secrets::generate_key(id) {
            Ok(entry) => {
                println!("{entry}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
        };
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The batch span processor is spawned on the runtime, so it is entered first.
    let telemetry = {
        let _runtime = runtime.enter();
        match telemetry::init(&log, &config.telemetry, process_role(&cli.command)) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        }
    };
    let config_path = cli.config.clone();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => run_role(config, server::Role::All, config_path).await,
            Command::Creator => run_role(config, server::Role::Creator, config_path).await,
            Command::Dispatcher => run_role(config, server::Role::Dispatcher, config_path).await,
            Command::Api => run_role(config, server::Role::Api, config_path).await,
            Command::Gateway => run_role(config, server::Role::Gateway, config_path).await,
            Command::Migrate => hookline::distributed::migrate(&config).await,
            Command::Demo { keep_running } => demo::run(config, keep_running).await,
            Command::Secrets(SecretsCommand::Rotate) => {
                let outcome = hookline::secrets::rotate(&config).await?;
                println!("{outcome}");
                Ok(())
            }
            Command::Config(_) | Command::Secrets(_) => Ok(()),
        }
    });
    // The runtime's workers still run the span processor while this blocks.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Hookline failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Names the process in `hookline-<role>`, the default `service.name` of
/// its exported spans.
fn process_role(command: &Command) -> &'static str {
    match command {
        Command::Serve => server::Role::All.name(),
        Command::Creator => server::Role::Creator.name(),
        Command::Dispatcher => server::Role::Dispatcher.name(),
        Command::Api => server::Role::Api.name(),
        Command::Gateway => server::Role::Gateway.name(),
        Command::Migrate => "migrate",
        Command::Demo { .. } => "demo",
        Command::Config(_) => "config",
        Command::Secrets(_) => "secrets",
    }
}

async fn run_role(
    config: Config,
    role: server::Role,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let running = server::start(config.clone(), role).await?;
    let reloading = CancellationToken::new();
    let reloader = Reloader {
        path: config_path,
        current: config,
        retry: running.retry_policy.clone(),
    };
    let reload_task = reloader.spawn(reloading.clone());
    wait_for_signal().await;
    tracing::info!("Shutdown requested; finishing in-flight deliveries");
    reloading.cancel();
    let _ = reload_task.await;
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
