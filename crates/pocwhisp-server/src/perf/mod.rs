//! `pocwhisp-server perf analyze|optimize|monitor|report`: the performance tool,
//! talking to a running server with an admin token.
//!
//! Exit codes, for scripts: 0 healthy (or done), 1 warnings, 2 critical, 3 the server could
//! not be reached or refused the token, 4 a bad argument or an output that could not be
//! written.

mod analyze;
mod client;
mod monitor;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

pub use client::{Client, ClientError};

/// Talking to a server.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// An admin token [default: $POCWHISP_ADMIN_TOKEN].
    #[arg(
        long,
        env = "POCWHISP_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
}

/// `perf`: look at a running server's performance and act on it.
#[derive(Debug, Args)]
pub struct PerfArgs {
    /// What to do.
    #[command(subcommand)]
    pub mode: Mode,
    /// Which server.
    #[command(flatten)]
    pub target: Target,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// The server's figures and health and this host's, as issues, warnings and
    /// recommendations.
    Analyze,
    /// Run the server's optimizer.
    Optimize {
        /// all, memory, cache, pools or db.
        #[arg(long = "type", default_value = "all")]
        kind: String,
        /// Run without asking.
        #[arg(long)]
        auto_apply: bool,
    },
    /// Watch the figures live, and keep the samples.
    Monitor {
        /// How long, as `60s` or `5m`.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Between two samples.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Where to write the samples (JSON or CSV, by `--format` or the file's extension).
        #[arg(long)]
        output: Option<PathBuf>,
        /// json or csv.
        #[arg(long)]
        format: Option<SampleFormat>,
    },
    /// The server's report over a period.
    Report {
        /// 1h, 24h or 7d.
        #[arg(long, default_value = "1h")]
        period: String,
        /// json, markdown or csv.
        #[arg(long, default_value = "markdown")]
        format: String,
        /// A file to write it to [default: standard output].
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// How monitor samples are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SampleFormat {
    /// One JSON array of samples.
    Json,
    /// One row per sample, one column per figure.
    Csv,
}

/// Exit codes.
pub(crate) const WARNING: u8 = 1;
pub(crate) const CRITICAL: u8 = 2;
pub(crate) const UNREACHABLE: u8 = 3;
pub(crate) const BAD_ARGUMENT: u8 = 4;

/// Whether to colour output: a terminal, and `NO_COLOR` unset.
pub(crate) fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Runs `perf` and returns its exit code.
pub fn run(args: PerfArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pocwhisp-server perf: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Some(token) = args.target.token.clone() else {
        eprintln!(
            "pocwhisp-server perf: an admin token is needed: --token or POCWHISP_ADMIN_TOKEN"
        );
        return ExitCode::from(BAD_ARGUMENT);
    };
    let client = match Client::new(&args.target.url, token) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("pocwhisp-server perf: {error}");
            return ExitCode::from(BAD_ARGUMENT);
        }
    };
    let result = runtime.block_on(async {
        match args.mode {
            Mode::Analyze => analyze::run(&client).await,
            Mode::Optimize { kind, auto_apply } => optimize(&client, &kind, auto_apply).await,
            Mode::Monitor {
                duration,
                interval,
                output,
                format,
            } => monitor::run(&client, duration, interval, output, format).await,
            Mode::Report {
                period,
                format,
                output,
            } => report(&client, &period, &format, output).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("pocwhisp-server perf: {error}");
            ExitCode::from(match error {
                ClientError::Unreachable(_) | ClientError::Refused(_) => UNREACHABLE,
                ClientError::Rejected { .. } | ClientError::Output(_) => BAD_ARGUMENT,
            })
        }
    }
}

/// Asks `question` on the terminal; true for yes.
fn confirm(question: &str) -> bool {
    use std::io::Write;
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

async fn optimize(client: &Client, kind: &str, auto_apply: bool) -> Result<u8, ClientError> {
    if !auto_apply {
        if !std::io::stdin().is_terminal() {
            return Err(ClientError::Output(
                "not a terminal to ask on: pass --auto-apply to run the optimizer".to_owned(),
            ));
        }
        if !confirm(&format!("Run the server's `{kind}` optimizations now?")) {
            println!("nothing done");
            return Ok(0);
        }
    }
    let body = client
        .post_json(&format!("/api/v1/performance/optimize?type={kind}"))
        .await?;
    let mut table = analyze::table(&["kind", "action", "took", "result"]);
    for action in body["actions"].as_array().into_iter().flatten() {
        let result = match action["outcome"]["summary"].as_str() {
            Some(summary) => summary.to_owned(),
            None => format!("failed: {}", action["error"].as_str().unwrap_or("?")),
        };
        table.add_row(vec![
            action["kind"].as_str().unwrap_or_default().to_owned(),
            action["name"].as_str().unwrap_or_default().to_owned(),
            format!("{:.1} ms", action["took_ms"].as_f64().unwrap_or_default()),
            result,
        ]);
    }
    println!("{table}");
    Ok(0)
}

async fn report(
    client: &Client,
    period: &str,
    format: &str,
    output: Option<PathBuf>,
) -> Result<u8, ClientError> {
    let text = client
        .get_text(&format!(
            "/api/v1/performance/report?period={period}&format={format}"
        ))
        .await?;
    match output {
        Some(path) => {
            std::fs::write(&path, &text)
                .map_err(|error| ClientError::Output(format!("{}: {error}", path.display())))?;
            eprintln!("report written to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(0)
}
