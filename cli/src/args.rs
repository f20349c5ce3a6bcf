//! Every command-line type (clap `Parser`/`Args`/`Subcommand`) of `fullslack`, in one place:
//! the whole command line can be read here, and a flag shared by several commands
//! (`--stack FILE` / `-s FILE` / `FULLSLACK_STACK`) is declared once so that it behaves the same
//! everywhere. What each command does with its arguments is in [`crate::cmd`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::commands::lock;
use crate::nginx::Color;
use crate::stack::{Stack, StackError};

/// Environment variable naming the stack file, for every command (CI sets it once).
pub const STACK_ENV: &str = "FULLSLACK_STACK";

/// Default stack file, in the current directory (what `fullslack init` writes).
pub const DEFAULT_STACK: &str = "fullslack.toml";

/// `--stack FILE` for commands that need a stack file.
#[derive(Debug, Args, Clone)]
pub struct StackArg {
    /// Stack file (TOML).
    #[arg(long, short = 's', env = STACK_ENV, default_value = DEFAULT_STACK, value_name = "FILE")]
    pub stack: PathBuf,
}

/// `--stack FILE` for commands that work without one (`health URL`, `build --image`,
/// `push IMAGE`, `apply PLAN`): the same flag, short form and environment variable.
#[derive(Debug, Args, Clone)]
pub struct StackOpt {
    /// Stack file (TOML).
    #[arg(long, short = 's', env = STACK_ENV, value_name = "FILE")]
    pub stack: Option<PathBuf>,
}

impl StackOpt {
    /// The stack, loaded and validated, when one was given.
    pub fn load(&self) -> Result<Option<Stack>, StackError> {
        self.stack.as_deref().map(crate::stack::load).transpose()
    }
}

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
    Build(BuildArgs),
    /// Push an image to a registry (username/password; retries transient failures).
    Push(PushArgs),
    /// Show what `apply` would change in AWS (exit 0: nothing, 2: changes, 1: error).
    Plan(PlanArgs),
    /// Apply a saved plan exactly, or plan a stack file and apply after asking.
    Apply(ApplyArgs),
    /// Remove everything a stack created in AWS (found by its tags), after showing the plan.
    Destroy(DestroyArgs),
    /// Secrets in AWS SSM Parameter Store (SecureString under /<stack>/<NAME>).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Deploy the stack's image to its hosts: blue/green, health-gated, no dropped user (ECS: a
    /// new task definition revision, the service moved to it).
    // `--version TAG` names the release here; `fullslack --version` still prints the tool's.
    #[command(disable_version_flag = true)]
    Deploy(DeployArgs),
    /// Switch back to a release the hosts kept (default: the one before the live one; ECS: an
    /// older task definition revision).
    Rollback(RollbackArgs),
    /// The releases each host keeps for rollback, and which one is live.
    Releases(ReleasesArgs),
    /// Per host: the live release, its container, readiness and WebSocket connections.
    Status(ReleasesArgs),
    /// The live release's container log on each host (`docker logs`).
    Logs(LogsArgs),
    /// Run a command in the live release's container on each host (`docker exec`).
    Exec(ExecArgs),
    /// TLS certificates over ACME: issue, status, renew.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Keep a deployed stack healthy: check every interval, restart a chat container that is
    /// down, renew due certificates, report drift (fix it with --fix), serve /metrics.
    Operate(OperateArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
}

/// `init` arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the stack file; with --ci, the stack file the workflows deploy (written
    /// first when it does not exist).
    #[arg(default_value = "fullslack.toml")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Write CI workflows for the stack into .github/workflows/ of the current directory:
    /// deploy on push to main, the stack checked (and an AWS stack planned) on pull requests.
    #[arg(long, value_enum, value_name = "PROVIDER")]
    pub ci: Option<CiProvider>,
    /// With --ci: build `fullslack` and the chat server image from this workspace (fullslack's
    /// own repository) instead of installing the released `fullslack`.
    #[arg(long, requires = "ci")]
    pub from_source: bool,
}

/// CI systems `init --ci` writes workflows for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CiProvider {
    /// GitHub Actions (`.github/workflows/`).
    Github,
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
    #[arg(long, default_value = crate::health::PROBE_PASSWORD_ENV)]
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

/// Options shared by `plan`, `apply` and `destroy`.
#[derive(Debug, Args, Clone)]
pub struct AwsOpts {
    /// Open SSH (22) to the whole internet when `ec2.ssh_cidr` says `0.0.0.0/0`.
    #[arg(long)]
    pub allow_ssh_from_anywhere: bool,
    /// Seconds to wait for instances to run and ECS services to become stable [default: 600,
    /// or what the saved plan says].
    #[arg(long, value_name = "SECS")]
    pub wait_timeout: Option<u64>,
}

/// The stack lock's options of `apply` and `destroy`.
#[derive(Debug, Args, Clone)]
pub struct LockOpts {
    /// While another apply/destroy/deploy holds the stack's lock, wait this long for it
    /// (`90`, `30s`, `10m`, `1h`) instead of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0")]
    pub lock_wait: Duration,
    /// Remove the stack's lock first, whoever holds it (for a run that died; says who held it).
    #[arg(long)]
    pub break_lock: bool,
}

/// `90` (seconds), `30s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write e.g. 90, 30s, 10m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => {
            return Err(format!(
                "`{s}` is not a duration: write e.g. 90, 30s, 10m or 1h"
            ))
        }
    };
    Ok(Duration::from_secs(secs))
}

/// `plan` arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// Save the plan (JSON, no secret values) for `fullslack apply PLAN`.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub opts: AwsOpts,
}

/// `apply` arguments.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `fullslack plan --out PLAN`: applied exactly, without asking.
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    /// Without PLAN: plan this stack file now (default fullslack.toml), show the plan and
    /// ask before applying it. Ignored with PLAN (a saved plan names its stack).
    #[command(flatten)]
    pub stack: StackOpt,
    /// Do not ask (with --stack).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub opts: AwsOpts,
    #[command(flatten)]
    pub lock: LockOpts,
}

/// `destroy` arguments.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// Do not ask.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub opts: AwsOpts,
    #[command(flatten)]
    pub lock: LockOpts,
}

/// `secrets` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a secret as an SSM SecureString `/<stack>/<NAME>`; the value comes from standard
    /// input (piped) or a silent prompt, never from the command line.
    Set {
        /// Secret name (letters, digits, `_ - .`).
        name: String,
        #[command(flatten)]
        stack: StackArg,
    },
    /// List the stack's secrets (names and versions, never values).
    List {
        #[command(flatten)]
        stack: StackArg,
    },
    /// Delete a secret.
    Rm {
        /// Secret name.
        name: String,
        #[command(flatten)]
        stack: StackArg,
    },
}

/// `build` arguments.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Pack a prebuilt binary into an image FROM scratch (no base image, no network): the
    /// binary, the shared libraries `ldd` reports, the loader and the health-check probe.
    #[arg(long)]
    pub offline: bool,
    /// The server binary to pack (--offline) [default: CARGO_TARGET_DIR or
    /// CONTEXT/target, then release/fullslack-chat].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The HEALTHCHECK probe to pack (--offline) [default: fullslack-healthcheck next to
    /// this program].
    #[arg(long, value_name = "PATH", conflicts_with = "no_healthcheck")]
    pub healthcheck_binary: Option<PathBuf>,
    /// Build without a HEALTHCHECK (--offline); leave health checks to the orchestrator.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Drop the binary's symbol table before packing it (--offline; needs binutils `strip`):
    /// ~4 MB smaller, but backtraces lose function names.
    #[arg(long)]
    pub strip: bool,
    /// Build context: the workspace, filtered by its .dockerignore.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub context: PathBuf,
    /// Dockerfile, relative to the context (multi-stage build; ignored with --offline).
    #[arg(long, short = 'f', default_value = "cli/templates/Dockerfile")]
    pub file: String,
    /// Repository to tag, `[REGISTRY/]NAME` [default: the stack's [image], else fullslack/chat].
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,
    /// Take the repository (and the tag to deploy) from this stack file's [image] section,
    /// and record the build for `push --stack` and `deploy`.
    #[command(flatten)]
    pub stack: StackOpt,
    /// Tag (repeat) [default: <git short sha>-<UTC timestamp>].
    #[arg(long, short = 't', value_name = "TAG")]
    pub tag: Vec<String>,
    /// Also tag `latest`.
    #[arg(long)]
    pub latest: bool,
    /// Build argument `KEY=VALUE` (repeat).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_arg: Vec<String>,
    /// Do not reuse the engine's layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull newer base images (multi-stage build).
    #[arg(long)]
    pub pull: bool,
    /// Source URL for the org.opencontainers.image.source label [default: git remote
    /// `origin`, else the context's file:// URL].
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
}

/// `push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Local image to push, `NAME:TAG` [default with --stack: the stack's last build].
    pub image: Option<String>,
    /// Push it as `REGISTRY/REPOSITORY` (same tag; tagged locally first) instead of its own
    /// name.
    #[arg(long, value_name = "REGISTRY/REPOSITORY")]
    pub to: Option<String>,
    /// Also push it as `latest`.
    #[arg(long)]
    pub latest: bool,
    /// Registry user name [default: the stack's image.username].
    #[arg(long, env = "FULLSLACK_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Environment variable holding the registry password (never pass it as a flag).
    #[arg(
        long,
        default_value = "FULLSLACK_REGISTRY_PASSWORD",
        value_name = "VAR"
    )]
    pub password_env: String,
    /// Take registry credentials (and `--to`) from this stack file's [image] section; without
    /// IMAGE, push the stack's last build (`fullslack build --stack`).
    #[command(flatten)]
    pub stack: StackOpt,
    /// Attempts in all for transient failures (network, 5xx).
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
    /// First wait between attempts in milliseconds; doubles each time (max 30 s).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_delay_ms: u64,
}

/// How `deploy`, `rollback` and `releases` reach a host and where its deploy state lives.
#[derive(Debug, Args, Clone)]
pub struct HostConnect {
    /// Known-hosts file for SSH (strict host key checking) [default: the stack's
    /// ssh.known_hosts, else ~/.ssh/known_hosts].
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Directory of the deploy state on the host: lock, env file, release log, audit log.
    #[arg(long, default_value = crate::deploy::STATE_ROOT, value_name = "DIR")]
    pub state_dir: String,
}

/// The host side of a release switch: Nginx, ports, how many releases to keep, deadlines.
#[derive(Debug, Args, Clone)]
pub struct SwitchOpts {
    #[command(flatten)]
    pub connect: HostConnect,
    /// The Nginx site file on the host [default: /etc/nginx/conf.d/fullslack-STACK.conf].
    #[arg(long, value_name = "PATH")]
    pub nginx_site: Option<String>,
    /// The host Nginx's main config (`nginx -c`), when not the system's.
    #[arg(long, value_name = "PATH")]
    pub nginx_conf: Option<String>,
    /// The host Nginx's prefix (`nginx -p`), when not the system's.
    #[arg(long, value_name = "DIR")]
    pub nginx_prefix: Option<String>,
    /// Plain HTTP port Nginx listens on.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// HTTPS port Nginx listens on.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Nginx listens on this IPv4 address only [default: every address].
    #[arg(long, value_name = "ADDR")]
    pub listen_v4: Option<std::net::Ipv4Addr>,
    /// Nginx does not listen on IPv6.
    #[arg(long)]
    pub no_ipv6: bool,
    /// Directory on the host with fullchain.pem and privkey.pem (`tls.enabled` stacks)
    /// [default: /etc/fullslack/certs/STACK].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<String>,
    /// Webroot the host's Nginx serves /.well-known/acme-challenge/ from.
    #[arg(long, default_value = crate::certs::ACME_ROOT, value_name = "DIR")]
    pub acme_root: String,
    /// Releases whose images each host keeps for rollback (the live one included).
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Seconds the old release gets after SIGTERM to close its sockets (1012) and exit.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub drain: u32,
    /// How long a new release may take to pass its health gate (`60`, `90s`, `2m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60")]
    pub health_deadline: Duration,
    /// User name of the probe account of the health gate's WebSocket round trip.
    #[arg(long, default_value = "fullslack-probe")]
    pub probe_user: String,
    /// Environment variable holding the probe account's password.
    #[arg(long, default_value = crate::health::PROBE_PASSWORD_ENV, value_name = "VAR")]
    pub probe_password_env: String,
    /// Environment variable holding a token of the probe identity.
    #[arg(long, default_value = "FULLSLACK_PROBE_TOKEN", value_name = "VAR")]
    pub probe_token_env: String,
    /// Register the probe account on the new release first (a fresh host has none).
    #[arg(long)]
    pub register_probe: bool,
    #[command(flatten)]
    pub lock: LockOpts,
    /// A deploy refreshes a heartbeat in the host's lock while it runs; a lock whose
    /// heartbeat is older than this belongs to a deploy that died and is taken over.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60")]
    pub lock_stale_after: Duration,
}

/// `deploy` arguments.
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// Image tag to deploy [default: the stack's last build, `fullslack build --stack`].
    #[arg(long, value_name = "TAG")]
    pub version: Option<String>,
    /// Stream the image even when a host has one of the same id (measuring the transfer):
    /// the host gets what a host without this image would get, the layers none of its other
    /// images has. Registry-free stacks only.
    #[arg(long)]
    pub send_image: bool,
    /// Gzip the image stream (registry-free stacks): about 3x fewer bytes for more CPU here;
    /// pays for hosts across the internet, not on a fast LAN (docs/deploy.md).
    #[arg(long)]
    pub compress_image: bool,
    /// `ec2` and `ecs` stacks: apply the infrastructure changes without asking (as `apply
    /// --yes`).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// `ec2` and `ecs` stacks: the options of the `apply` that runs first (`--wait-timeout` also
    /// bounds the wait for the ECS service).
    #[command(flatten)]
    pub aws: AwsOpts,
    #[command(flatten)]
    pub switch: SwitchOpts,
    #[command(flatten)]
    pub cert_checks: CertCheckOpts,
}

/// The checks run before a certificate is ordered or renewed (`deploy` and `operate` of a
/// `tls.enabled` stack).
#[derive(Debug, Args, Clone)]
pub struct CertCheckOpts {
    /// DNS server (IP:PORT) for the DNS/CAA checks run before a certificate is ordered
    /// (`tls.enabled` stacks).
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// Order the stack's certificate without running `doctor`'s DNS/CAA checks first.
    #[arg(long)]
    pub skip_cert_checks: bool,
}

/// `rollback` arguments.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The kept version to switch to [default: the one before the live one].
    #[arg(value_name = "VERSION")]
    pub to_version: Option<String>,
    #[command(flatten)]
    pub stack: StackArg,
    #[command(flatten)]
    pub switch: SwitchOpts,
}

/// `releases` and `status` arguments.
#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub stack: StackArg,
    #[command(flatten)]
    pub connect: HostConnect,
}

/// `logs` arguments.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub stack: StackArg,
    #[command(flatten)]
    pub connect: HostConnect,
    /// Only this host (its `name` or `address`); needed with --follow when the stack has
    /// several hosts.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Keep printing new lines as they come, until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines since then: a duration (`10m`, `2h`) or a time (`2025-01-31T12:00:00Z`), as
    /// `docker logs --since` takes it.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the last N lines of each host.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
}

/// `exec` arguments.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub stack: StackArg,
    #[command(flatten)]
    pub connect: HostConnect,
    /// Only this host (its `name` or `address`).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The command and its arguments, after `--` (run without a shell: the images have none).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Order a certificate for the stack's domains over ACME (HTTP-01 through the host's
    /// Nginx) and install it; refused while one this tool issued is valid and not due.
    Issue(CertsIssueArgs),
    /// Per domain: issuer, serial, expiry, days left, renewal window, next renewal due.
    Status(CertsArgs),
    /// Renew the certificate when due: `tls.renew_days_before` when set, else the CA's renewal
    /// information (ARI), else a third of its lifetime left. What a timer runs.
    Renew(CertsIssueArgs),
}

/// Where `certs` finds the host's certificate, webroot and Nginx.
#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// Known-hosts file for SSH (strict host key checking) [default: the stack's
    /// ssh.known_hosts, else ~/.ssh/known_hosts].
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Directory on the host with fullchain.pem and privkey.pem [default:
    /// /etc/fullslack/certs/STACK, as `nginx render`].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<String>,
    /// Webroot the host's Nginx serves /.well-known/acme-challenge/ from.
    #[arg(long, default_value = crate::certs::ACME_ROOT, value_name = "DIR")]
    pub acme_root: String,
    /// The host Nginx's main config (`nginx -c`), when not the system's.
    #[arg(long, value_name = "PATH")]
    pub nginx_conf: Option<String>,
    /// The host Nginx's prefix (`nginx -p`), when not the system's.
    #[arg(long, value_name = "DIR")]
    pub nginx_prefix: Option<String>,
    /// DNS server (IP:PORT) for the DNS/CAA checks run before ordering.
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// Order without running `doctor`'s DNS/CAA checks first.
    #[arg(long)]
    pub skip_checks: bool,
}

/// `certs issue` / `certs renew` arguments.
#[derive(Debug, Args)]
pub struct CertsIssueArgs {
    #[command(flatten)]
    pub certs: CertsArgs,
    /// Order even though the installed certificate is not due (the order log's rate limits
    /// still apply).
    #[arg(long)]
    pub force: bool,
}

/// `operate` arguments.
#[derive(Debug, Args)]
pub struct OperateArgs {
    #[command(flatten)]
    pub stack: StackArg,
    /// Time between the end of one round of checks and the start of the next (`30`, `30s`,
    /// `5m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub interval: Duration,
    /// Run one round and exit: 0 when every check passed, 1 otherwise (a scheduled CI job).
    #[arg(long)]
    pub once: bool,
    /// Repair drift too: put Nginx back on the rendered site, remove a container of the
    /// stack the release log does not know, redeploy the live release when its container
    /// runs another one or is gone. Without it drift is only reported. AWS drift is always
    /// only reported (run `fullslack apply`).
    #[arg(long)]
    pub fix: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics (`127.0.0.1:9464`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How long a running chat container may stay unhealthy (failing /readyz or the WebSocket
    /// round trip) before it is restarted. A container that is not running is started at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub grace: Duration,
    // The hosts, Nginx, certificate paths and probe settings exactly as `deploy` takes
    // them: what the drift checks compare against, what a --fix redeploy and a renewal use.
    #[command(flatten)]
    pub switch: SwitchOpts,
    #[command(flatten)]
    pub cert_checks: CertCheckOpts,
}
