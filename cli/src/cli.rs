//! Command-line interface: clap definitions and dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

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

/// `--stack FILE`.
#[derive(Debug, Args, Clone)]
pub struct StackArg {
    /// Stack file (TOML).
    #[arg(
        long,
        short = 's',
        env = "FULLSLACK_STACK",
        default_value = "fullslack.toml"
    )]
    pub stack: PathBuf,
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
    #[arg(long, short = 's')]
    pub stack: Option<PathBuf>,
    /// User name of the probe account (registered on first use).
    #[arg(long, default_value = "fullslack-probe")]
    pub probe_user: String,
    /// Environment variable holding the probe account's password.
    #[arg(long, default_value = "FULLSLACK_PROBE_PASSWORD")]
    pub probe_password_env: String,
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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
                    let v = serde_json::json!({"error": e.to_string(), "hint": e.hint()});
                    reporter.print_json(&v);
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
            let s = stack::load(&a.stack)?;
            if r.json {
                r.print_json(&serde_json::json!({"ok": true, "stack": s}));
            } else {
                println!(
                    "{}: stack `{}` is valid (target {}, {} domain(s))",
                    a.stack.display(),
                    s.name,
                    s.target.as_str(),
                    s.domains.len()
                );
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
            clap_complete::generate(a.shell, &mut cmd, "fullslack", &mut std::io::stdout());
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
    let stack = a.stack.as_deref().map(stack::load).transpose()?;
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
    let probe_password = std::env::var(&a.probe_password_env)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new);
    let o = crate::health::HealthOptions {
        url,
        probe_user: a.probe_user.clone(),
        probe_password,
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
    let s = stack::load(&a.stack.stack)?;
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
    let report = crate::doctor::run(&s, &o).await;
    spinner.finish_and_clear();
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
            let who = format!(
                "{}@{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
            );
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
            Err(CliError::Usage {
                message: match holder {
                    Some(h) => format!(
                        "the deploy lock of `{stack}` on {} is held by {} since {} ({})",
                        runner.host(),
                        h.who,
                        h.since,
                        h.message
                    ),
                    None => format!(
                        "cannot take the deploy lock on {}: {}",
                        runner.host(),
                        out.stderr.trim()
                    ),
                },
                hint: "wait for that deploy to finish, or `fullslack lock release` if it died"
                    .into(),
            })
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
    let s = stack::load(&args.stack.stack)?;
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
        for t in ssh_targets(&s, args.known_hosts.as_ref()) {
            let runner = SshRunner::connect(&t).await?;
            let res = lock_on(&runner, &c, &s.name).await;
            let _ = runner.close().await;
            lines.push(res?);
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
