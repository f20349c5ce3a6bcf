//! Command-line interface: clap definitions and dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::args::{StackArg, StackOpt};
use crate::check::Outcome;
use crate::commands::{lock, Cmd};
use crate::error::CliError;
use crate::nginx::{self, Color, SiteParams};
use crate::output::Reporter;
use crate::runner::{LocalRunner, RecordingRunner, Runner, SshRunner, SshTarget};
use crate::secret::Secret;
use crate::stack::{self, Stack, Target};

/// Deploy and operate fullslack chat stacks.
#[derive(Debug, Parser)]
#[command(name = "fullslack", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text (for CI).
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented stack file to start from.
    Init(InitArgs),
    /// Stack file operations.
    #[command(subcommand)]
    Stack(StackCommand),
    /// Nginx configuration.
    #[command(subcommand)]
    Nginx(NginxCommand),
    /// Probe a running server: /healthz, /readyz, a WebSocket round trip, the certificate.
    Health(HealthArgs),
    /// Check DNS, ports, CAA, SSH, Docker, AWS credentials, certificate and clock for a stack.
    Doctor(DoctorArgs),
    /// The deploy lock on a stack's hosts.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Build the chat server image through the Docker Engine API (multi-stage or --offline).
    Build(crate::image::cmd::BuildArgs),
    /// Push an image to a registry (username/password; retries transient failures).
    Push(crate::image::cmd::PushArgs),
    /// Show what `apply` would change in AWS (exit 0: nothing, 2: changes, 1: error).
    Plan(crate::aws_cmd::PlanArgs),
    /// Apply a saved plan exactly, or plan a stack file and apply after asking.
    Apply(crate::aws_cmd::ApplyArgs),
    /// Remove everything a stack created in AWS (found by its tags), after showing the plan.
    Destroy(crate::aws_cmd::DestroyArgs),
    /// Secrets in AWS SSM Parameter Store (SecureString under /<stack>/<NAME>).
    #[command(subcommand)]
    Secrets(crate::aws_cmd::SecretsCommand),
    /// Print shell completions.
    Completions(CompletionsArgs),
}

/// `init` arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the stack file.
    #[arg(default_value = "fullslack.toml")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// `stack` subcommands.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Parse and validate a stack file; errors point at the line and key with the fix.
    Check(StackArg),
}

/// `nginx` subcommands.
#[derive(Debug, Subcommand)]
pub enum NginxCommand {
    /// Render the Nginx site config for a stack.
    Render(RenderArgs),
}

/// `nginx render` arguments.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// Which blue/green upstream receives traffic.
    #[arg(long, value_enum, default_value = "blue")]
    pub active: Color,
    /// Directory holding fullchain.pem and privkey.pem [default: /etc/fullslack/certs/STACK].
    #[arg(long)]
    pub cert_dir: Option<String>,
    /// Webroot for ACME HTTP-01 challenge files.
    #[arg(long, default_value = "/var/lib/fullslack/acme")]
    pub acme_root: String,
    /// Plain HTTP port.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// HTTPS port.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Listen on this IPv4 address only [default: every address].
    #[arg(long, value_name = "ADDR")]
    pub listen_v4: Option<std::net::Ipv4Addr>,
    /// Listen on this IPv6 address [default: every address, `::`].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_ipv6")]
    pub listen_v6: Option<std::net::Ipv6Addr>,
    /// Do not listen on IPv6 (the host has no IPv6 address).
    #[arg(long)]
    pub no_ipv6: bool,
    /// Override the blue upstream servers (repeat; `HOST:PORT`).
    #[arg(long = "blue", value_name = "HOST:PORT")]
    pub blue: Vec<String>,
    /// Override the green upstream servers (repeat; `HOST:PORT`).
    #[arg(long = "green", value_name = "HOST:PORT")]
    pub green: Vec<String>,
    /// Also write a self-contained main nginx.conf with everything under this prefix
    /// (requires --output); the site file is included from it.
    #[arg(long, value_name = "DIR")]
    pub main_prefix: Option<PathBuf>,
    /// Write the site config to this file instead of stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// `health` arguments.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Base URL of the server (https://chat.example.com). Default: the stack's first domain.
    pub url: Option<String>,
    /// Take the URL and health settings from this stack file.
    #[command(flatten)]
    pub stack: StackOpt,
    /// User name of the probe account (signs in; never registered unless --register-probe).
    #[arg(long, default_value = "fullslack-probe")]
    pub probe_user: String,
    /// Environment variable holding the probe account's password.
    #[arg(long, default_value = "FULLSLACK_PROBE_PASSWORD")]
    pub probe_password_env: String,
    /// Environment variable holding a token of the probe identity (used as is: no sign-in).
    #[arg(long, default_value = "FULLSLACK_PROBE_TOKEN")]
    pub probe_token_env: String,
    /// Register the probe account first (once, when setting up monitoring).
    #[arg(long)]
    pub register_probe: bool,
    /// Skip the WebSocket round trip.
    #[arg(long)]
    pub no_websocket: bool,
    /// Seconds each step may take.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Extra CA certificate(s) to trust, PEM (private CA, test CA).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Fail when the certificate has fewer days left.
    #[arg(long, default_value_t = 14)]
    pub cert_min_days: i64,
}

/// `doctor` arguments.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// DNS server to query (IP:PORT) instead of the system resolvers.
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// HTTP port to probe on each published address.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// HTTPS port to probe on each published address.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Skip a group of checks (repeat): dns, reach, caa, tls, clock, ssh, docker, aws.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::doctor::CHECK_GROUPS))]
    pub skip: Vec<String>,
    /// Seconds each network step may take.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
    /// Extra CA certificate(s) to trust for the certificate check, PEM.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Fail when the certificate has fewer days left.
    #[arg(long, default_value_t = 14)]
    pub cert_min_days: i64,
}

/// Where lock commands run.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// Print the commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
    /// Known-hosts file for SSH (strict host key checking).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Lock directory on the host.
    #[arg(long, default_value = lock::LOCK_ROOT)]
    pub lock_root: String,
}

/// `lock` subcommands.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Take the deploy lock on every host (fails if someone holds it).
    Acquire {
        #[command(flatten)]
        args: LockArgs,
        /// Why (shown to whoever finds the lock taken).
        #[arg(long, short = 'm', default_value = "manual lock")]
        message: String,
    },
    /// Release the deploy lock on every host.
    Release {
        #[command(flatten)]
        args: LockArgs,
    },
    /// Show who holds the deploy lock.
    Status {
        #[command(flatten)]
        args: LockArgs,
    },
}

/// `completions` arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Exit code of a usage error (BSD `EX_USAGE`): wrong flags, unknown subcommand, a file that
/// exists. Kept apart from 2, which `plan` uses for "changes present".
pub const EXIT_USAGE: u8 = 64;
/// Exit code when stdout or stderr is a closed pipe (`fullslack plan | head`): what a process
/// killed by SIGPIPE reports (128 + 13), without a panic message.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Subcommands that are planned but not built: typing one says so instead of suggesting a
/// different (possibly destructive) command, and says what to do today.
pub const NOT_YET: &[(&str, &str)] = &[
    (
        "deploy",
        "the blue/green deploy is not built yet; its pieces are: `fullslack build`/`push`, `lock acquire`, `nginx render`, `health` (see docs/cli.md, \"Not built yet\")",
    ),
    (
        "certs",
        "certificate issuance is not built yet: place fullchain.pem and privkey.pem for the domains in the cert directory (`nginx render --cert-dir`, default /etc/fullslack/certs/STACK), e.g. from certbot, and reload Nginx",
    ),
    (
        "cert",
        "certificate issuance is not built yet: place fullchain.pem and privkey.pem for the domains in the cert directory (`nginx render --cert-dir`, default /etc/fullslack/certs/STACK), e.g. from certbot, and reload Nginx",
    ),
    (
        "serve",
        "`fullslack serve` is not built yet: run the server binary `fullslack-chat` (see README)",
    ),
    (
        "rollback",
        "rollback is not built yet: re-render Nginx with the previous colour (`nginx render --active blue|green`) and reload it",
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
    match rt.block_on(dispatch(cli, reporter)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CliError::ChecksFailed(_) | CliError::PendingChanges) {
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

async fn dispatch(cli: Cli, r: Reporter) -> Result<(), CliError> {
    match cli.command {
        Command::Init(a) => init(&a, &r),
        Command::Stack(StackCommand::Check(a)) => {
            let s = stack::check(&a.stack)?;
            let warnings = stack::warnings(&s);
            if r.json {
                r.print_json(&serde_json::json!({"ok": true, "stack": s, "warnings": warnings}));
            } else {
                println!(
                    "{}: stack `{}` is valid (target {}, {} domain(s))",
                    a.stack.display(),
                    s.name,
                    s.target.as_str(),
                    s.domains.len()
                );
                for w in warnings {
                    println!("warning: {w}");
                }
            }
            Ok(())
        }
        Command::Nginx(NginxCommand::Render(a)) => render(&a),
        Command::Health(a) => health(&a, &r).await,
        Command::Doctor(a) => doctor(&a, &r).await,
        Command::Lock(c) => lock_cmd(c, &r).await,
        Command::Build(a) => crate::image::cmd::run_build(&a, &r).await,
        Command::Push(a) => crate::image::cmd::run_push(&a, &r).await,
        Command::Plan(a) => crate::aws_cmd::plan(&a, &r).await,
        Command::Apply(a) => crate::aws_cmd::apply(&a, &r).await,
        Command::Destroy(a) => crate::aws_cmd::destroy(&a, &r).await,
        Command::Secrets(c) => crate::aws_cmd::secrets(&c, &r).await,
        Command::Completions(a) => {
            let mut cmd = Cli::command();
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut buf = Vec::new();
            clap_complete::generate(a.shell, &mut cmd, "fullslack", &mut buf);
            print!("{}", String::from_utf8_lossy(&buf));
            Ok(())
        }
    }
}

fn write_file(path: &Path, content: &str) -> Result<(), CliError> {
    std::fs::write(path, content).map_err(|source| CliError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

fn init(a: &InitArgs, r: &Reporter) -> Result<(), CliError> {
    if a.path.exists() && !a.force {
        return Err(CliError::Usage {
            message: format!("{} already exists", a.path.display()),
            hint: "pass --force to overwrite it, or give another path".into(),
        });
    }
    write_file(&a.path, stack::INIT_TEMPLATE)?;
    if r.json {
        r.print_json(&serde_json::json!({"written": a.path}));
    } else {
        println!(
            "wrote {}: edit it, then run `fullslack stack check --stack {}`",
            a.path.display(),
            a.path.display()
        );
    }
    Ok(())
}

fn render(a: &RenderArgs) -> Result<(), CliError> {
    let s = stack::load(&a.stack.stack)?;
    let mut p = SiteParams::from_stack(&s)?;
    p.active = a.active;
    if let Some(d) = &a.cert_dir {
        p.cert_dir = d.clone();
    }
    p.acme_root = a.acme_root.clone();
    p.http_port = a.http_port;
    p.https_port = a.https_port;
    if let Some(v4) = a.listen_v4 {
        p.listen_v4 = Some(v4.to_string());
    }
    if let Some(v6) = a.listen_v6 {
        p.listen_v6 = Some(v6.to_string());
    }
    if a.no_ipv6 {
        p.listen_v6 = None;
    }
    if !a.blue.is_empty() {
        p.blue = a.blue.clone();
    }
    if !a.green.is_empty() {
        p.green = a.green.clone();
    }
    let site = nginx::render_site(&p)?;
    match (&a.output, &a.main_prefix) {
        (None, Some(_)) => Err(CliError::Usage {
            message: "--main-prefix needs --output".into(),
            hint: "pass --output SITE.conf so the main config can include it".into(),
        }),
        (None, None) => {
            print!("{site}");
            Ok(())
        }
        (Some(out), prefix) => {
            write_file(out, &site)?;
            if let Some(prefix) = prefix {
                let abs = |p: &Path| -> Result<PathBuf, CliError> {
                    std::path::absolute(p).map_err(|source| CliError::Io {
                        action: "cannot resolve",
                        path: p.to_path_buf(),
                        source,
                    })
                };
                let prefix = abs(prefix)?;
                std::fs::create_dir_all(&prefix).map_err(|source| CliError::Io {
                    action: "cannot create",
                    path: prefix.clone(),
                    source,
                })?;
                let site_abs = abs(out)?;
                let main = nginx::render_main(
                    &prefix.display().to_string(),
                    &site_abs.display().to_string(),
                    false,
                )?;
                write_file(&prefix.join("nginx.conf"), &main)?;
            }
            Ok(())
        }
    }
}

async fn health(a: &HealthArgs, r: &Reporter) -> Result<(), CliError> {
    let stack = a.stack.stack.as_deref().map(stack::load).transpose()?;
    let url = match (&a.url, &stack) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => {
            let scheme = if s.tls.enabled { "https" } else { "http" };
            format!(
                "{scheme}://{}",
                s.domains.first().map(String::as_str).unwrap_or("")
            )
        }
        (None, None) => {
            return Err(CliError::Usage {
                message: "no URL to probe".into(),
                hint: "pass a URL (fullslack health https://chat.example.com) or --stack FILE"
                    .into(),
            })
        }
    };
    let url = reqwest::Url::parse(&url).map_err(|e| CliError::Usage {
        message: format!("`{url}` is not a URL: {e}"),
        hint: "write it with its scheme, e.g. https://chat.example.com".into(),
    })?;
    let from_env = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    let o = crate::health::HealthOptions {
        url,
        probe_user: a.probe_user.clone(),
        probe_password: from_env(&a.probe_password_env),
        probe_token: from_env(&a.probe_token_env),
        register_probe: a.register_probe,
        timeout: Duration::from_secs(a.timeout),
        ca_file: a.ca_file.clone(),
        websocket: !a.no_websocket && stack.as_ref().is_none_or(|s| s.health.websocket),
        cert_min_days: a.cert_min_days,
    };
    let spinner = r.spinner(format!("probing {}", o.url));
    let report = crate::health::run(&o).await;
    spinner.finish_and_clear();
    report.print(r);
    finish(&report)
}

fn finish(report: &crate::check::Report) -> Result<(), CliError> {
    let failed = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::ChecksFailed(failed))
    }
}

async fn doctor(a: &DoctorArgs, r: &Reporter) -> Result<(), CliError> {
    let mut s = stack::load(&a.stack.stack)?;
    // An ec2 stack's hosts come from AWS; when they cannot be found, doctor still runs the
    // checks that need no host and says why the host checks are missing.
    let lookup = crate::hosts::resolve(&mut s).await.err();
    let o = crate::doctor::DoctorOptions {
        dns_server: a.dns_server,
        http_port: a.http_port,
        https_port: a.https_port,
        timeout: Duration::from_secs(a.timeout),
        skip: a.skip.clone(),
        ca_file: a.ca_file.clone(),
        cert_min_days: a.cert_min_days,
        ..Default::default()
    };
    let spinner = r.spinner(format!("checking stack {}", s.name));
    let mut report = crate::doctor::run(&s, &o).await;
    spinner.finish_and_clear();
    if let Some(e) = lookup {
        let message = e.to_string();
        let hint = e
            .hint()
            .unwrap_or_else(|| "check the AWS credentials (doctor's aws check)".into());
        report.checks.insert(
            0,
            crate::check::Check::fail("ec2.hosts", &s.name, message, hint),
        );
        report.ok = false;
    }
    report.print(r);
    finish(&report)
}

fn ssh_targets(s: &Stack, known_hosts: Option<&PathBuf>) -> Vec<SshTarget> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let expand = |p: &str| match (p.strip_prefix("~/"), &home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    };
    s.hosts
        .iter()
        .map(|h| {
            let mut t = SshTarget::new(
                h.address.clone(),
                h.user.clone().unwrap_or_else(|| s.ssh.user.clone()),
                h.port.unwrap_or(s.ssh.port),
            );
            t.identity_file = s.ssh.identity_file.as_deref().map(expand);
            t.known_hosts = known_hosts
                .cloned()
                .or_else(|| s.ssh.known_hosts.as_deref().map(expand));
            t
        })
        .collect()
}

async fn lock_on<R: Runner>(runner: &R, c: &LockCommand, stack: &str) -> Result<String, CliError> {
    let (args, cmd): (&LockArgs, Cmd) = match c {
        LockCommand::Acquire { args, message } => {
            let who = fullslack_aws::lock::whoami();
            let since = httpdate::fmt_http_date(std::time::SystemTime::now());
            let h = lock::Holder {
                who,
                since,
                message: message.clone(),
            };
            (args, lock::acquire(&lock_root(c), stack, &h))
        }
        LockCommand::Release { args } => (args, lock::release(&args.lock_root, stack)),
        LockCommand::Status { args } => (args, lock::status(&args.lock_root, stack)),
    };
    let _ = args;
    let out = runner.run(&cmd).await?;
    match c {
        LockCommand::Acquire { .. } if !out.success() => {
            let holder = runner
                .run(&lock::status(&lock_root(c), stack))
                .await
                .ok()
                .and_then(|o| lock::parse_holder(&o.stdout));
            match holder {
                Some(h) => Err(CliError::LockHeld {
                    message: format!(
                        "the deploy lock of `{stack}` on {} is held by {} since {} ({})",
                        runner.host(),
                        h.who,
                        h.since,
                        h.message
                    ),
                }),
                None => Err(crate::runner::RunError::Failed {
                    host: runner.host(),
                    cmd: cmd.to_string(),
                    status: out.status,
                    stderr: out.stderr.trim().to_string(),
                }
                .into()),
            }
        }
        LockCommand::Status { .. } => Ok(match lock::parse_holder(&out.stdout) {
            Some(h) => format!(
                "{}: held by {} since {} ({})",
                runner.host(),
                h.who,
                h.since,
                h.message
            ),
            None => format!("{}: free", runner.host()),
        }),
        _ if !out.success() => Err(crate::runner::RunError::Failed {
            host: runner.host(),
            cmd: cmd.to_string(),
            status: out.status,
            stderr: out.stderr.trim().to_string(),
        }
        .into()),
        LockCommand::Acquire { .. } => Ok(format!("{}: lock taken", runner.host())),
        LockCommand::Release { .. } => Ok(format!("{}: lock released", runner.host())),
    }
}

fn lock_root(c: &LockCommand) -> String {
    match c {
        LockCommand::Acquire { args, .. }
        | LockCommand::Release { args }
        | LockCommand::Status { args } => args.lock_root.clone(),
    }
}

async fn lock_cmd(c: LockCommand, r: &Reporter) -> Result<(), CliError> {
    let args = match &c {
        LockCommand::Acquire { args, .. }
        | LockCommand::Release { args }
        | LockCommand::Status { args } => args,
    };
    let mut s = stack::load(&args.stack.stack)?;
    crate::hosts::resolve(&mut s).await?;
    let mut lines = Vec::new();
    if args.dry_run {
        let rec = RecordingRunner::new("dry-run");
        lock_on(&rec, &c, &s.name).await?;
        for cmd in rec.commands() {
            lines.push(cmd.to_string());
        }
    } else if s.target == Target::Local {
        lines.push(lock_on(&LocalRunner, &c, &s.name).await?);
    } else if s.hosts.is_empty() {
        return Err(CliError::Usage {
            message: format!("stack `{}` lists no hosts", s.name),
            hint: "add [[hosts]] to the stack file (EC2 hosts appear after `fullslack apply`)"
                .into(),
        });
    } else {
        let acquiring = matches!(c, LockCommand::Acquire { .. });
        let targets = ssh_targets(&s, args.known_hosts.as_ref());
        let mut taken: Vec<&SshTarget> = Vec::new();
        for t in &targets {
            let res = match SshRunner::connect(t).await {
                Ok(runner) => {
                    let res = lock_on(&runner, &c, &s.name).await;
                    let _ = runner.close().await;
                    res
                }
                Err(e) => Err(e.into()),
            };
            match res {
                Ok(line) => {
                    lines.push(line);
                    taken.push(t);
                }
                // A half-taken lock blocks everyone and says nothing: give back what this run
                // took, and say which hosts (if any) still hold it.
                Err(e) if acquiring && !taken.is_empty() => {
                    let release = LockCommand::Release {
                        args: LockArgs {
                            stack: args.stack.clone(),
                            dry_run: false,
                            known_hosts: args.known_hosts.clone(),
                            lock_root: args.lock_root.clone(),
                        },
                    };
                    let mut released = Vec::new();
                    let mut still = Vec::new();
                    for t in taken {
                        let ok = match SshRunner::connect(t).await {
                            Ok(runner) => {
                                let ok = lock_on(&runner, &release, &s.name).await.is_ok();
                                let _ = runner.close().await;
                                ok
                            }
                            Err(_) => false,
                        };
                        let name = format!("{}:{}", t.host, t.port);
                        if ok {
                            released.push(name);
                        } else {
                            still.push(name);
                        }
                    }
                    let note = if still.is_empty() {
                        format!(
                            "released the lock this run had taken on {}",
                            released.join(", ")
                        )
                    } else {
                        format!(
                            "could not release the lock this run had taken on {}: run `fullslack lock release` for them{}",
                            still.join(", "),
                            if released.is_empty() { String::new() } else { format!(" (released on {})", released.join(", ")) }
                        )
                    };
                    return Err(match e {
                        CliError::LockHeld { message } => CliError::LockHeld {
                            message: format!("{message}; {note}"),
                        },
                        other => CliError::Failed {
                            message: format!("{other}; {note}"),
                            hint: other.hint().unwrap_or_default(),
                        },
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    if r.json {
        r.print_json(&serde_json::json!({"results": lines}));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}
