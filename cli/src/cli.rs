//! The binary's entry point: parses the command line ([`crate::args`]), sets up logging,
//! runs the command ([`crate::cmd::dispatch`]), prints the error with its hint (or one JSON
//! line) and turns it into the exit code. Also the usage-error path: a planned but missing
//! command says so instead of suggesting a different one.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::Cli;
use crate::error::CliError;
use crate::output::Reporter;
use crate::stack;

pub use crate::error::EXIT_USAGE;
/// Exit code when stdout or stderr is a closed pipe (`fullslack plan | head`): what a process
/// killed by SIGPIPE reports (128 + 13), without a panic message.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Subcommands that are planned but not built: typing one says so instead of suggesting a
/// different (possibly destructive) command, and says what to do today.
pub const NOT_YET: &[(&str, &str)] = &[
    (
        "cert",
        "the command is `fullslack certs` (issue, status, renew; docs/certs.md)",
    ),
    (
        "serve",
        "`fullslack serve` is not built yet: run the server binary `fullslack-chat` (see README)",
    ),
];

/// A `println!` or `eprintln!` into a closed pipe panics ("failed printing to stdout: Broken
/// pipe"): wherever output is written (plans, reports, JSON), end the process quietly instead.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info);
    }));
}

/// Reports a command-line parse error: help and version exit 0, everything else is a usage
/// error (64), with `--json` as one JSON line.
fn parse_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let json = std::env::args().any(|a| a == "--json");
    let mut message = e.render().to_string();
    let mut hint = "run `fullslack --help` (or `fullslack COMMAND --help`)".to_string();
    if e.kind() == ErrorKind::InvalidSubcommand {
        if let Some(ContextValue::String(typed)) = e.get(ContextKind::InvalidSubcommand) {
            // Nearest among the real and the planned names: `secret` still means `secrets`.
            let cmd = Cli::command();
            let mut names: Vec<&str> = cmd.get_subcommands().map(clap::Command::get_name).collect();
            names.extend(NOT_YET.iter().map(|(n, _)| *n));
            if let Some(name) =
                stack::closest_word(typed, &names).filter(|n| NOT_YET.iter().any(|(p, _)| p == n))
            {
                let what = NOT_YET
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, w)| *w)
                    .unwrap_or_default();
                message = format!("`fullslack {name}` is not available yet");
                hint = what.to_string();
                if !json {
                    eprintln!("error: {message}\nhint: {hint}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    }
    if json {
        let first = message
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        let v = serde_json::json!({"error": first, "hint": hint, "exit_code": EXIT_USAGE});
        println!("{v}");
    } else {
        let _ = e.print();
    }
    ExitCode::from(EXIT_USAGE)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(e),
    };
    init_tracing(cli.verbose);
    let reporter = Reporter::new(cli.json);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::cmd::dispatch(cli, reporter)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CliError::ChecksFailed(_) | CliError::PendingChanges) {
                if let Some(gh) = crate::actions::detect() {
                    gh.report_error(&e);
                }
                if reporter.json {
                    // One line, so CI can read it with a line-based tool.
                    println!("{}", e.to_json());
                } else {
                    eprintln!("error: {e}");
                    if let Some(h) = e.hint() {
                        eprintln!("hint: {h}");
                    }
                }
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
