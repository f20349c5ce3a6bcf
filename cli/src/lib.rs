//! `fullslack`: the deploy tool and operator for the fullslack chat server.
//!
//! Module map:
//! - [`cli`]: the entry point ([`cli::main`], all `main.rs` calls): parsing, logging, error
//!   printing and exit codes.
//! - [`args`]: every clap type (the whole command line), `--stack` declared once.
//! - [`cmd`]: one handler per subcommand (`cmd/<command>.rs`), called by [`cmd::dispatch`].
//! - [`stack`]: stack files (TOML): the model, parsing with unknown keys refused, validation
//!   with line/column diagnostics and fixes, and the `init` template.
//! - [`state`]: what the CLI remembers per stack beside the stack file (`.fullslack/STACK/`):
//!   the last build, for `push --stack` and deploy.
//! - [`secret`]: secret values ([`secret::SecretString`], the workspace's one, `secrecy`'s:
//!   redacted Debug, no Display) and secret references (environment variable, SSM parameter).
//! - [`commands`]: commands as data: pure functions building `docker`, `nginx`, file-write,
//!   lock and probe command lines with exact shell quoting.
//! - [`deploy`]: one host's release switch (lock, bootstrap, env file, image transfer,
//!   blue/green with a health gate, Nginx, drain, release log, audit), for `deploy` and
//!   `rollback`; and the stack's managed Redis/MongoDB containers (accessories).
//! - [`runner`]: the [`runner::Runner`] trait and its local (`sh -c`), SSH (openssh mux) and
//!   recording (`--dry-run`) implementations; commands run captured, with stdin streamed, or
//!   attached to this process's output (`logs`, `exec`).
//! - [`nginx`]: site and main configs rendered from `cli/nginx/*.j2` (minijinja).
//! - [`image`]: `build` and `push` of the chat server's container image through the Docker
//!   Engine API (bollard): `.dockerignore`-aware contexts, the offline FROM-scratch image,
//!   tags and OCI labels, retries and classified push errors.
//! - [`aws_spec`]: a stack file as the `fullslack-aws` crate's input (`plan`, `apply`,
//!   `destroy`), the stack's region and ECR credentials.
//! - [`health`]: `/healthz`, `/readyz`, a WebSocket round trip as a probe user, certificate.
//! - [`hosts`]: the hosts commands connect to: `[[hosts]]`, or an `ec2` stack's instances
//!   found by its tags.
//! - [`doctor`]: DNS A/AAAA/CAA against the hosts, reachability, SSH, Docker, AWS
//!   credentials, certificate, clock.
//! - [`tls`]: rustls configs and certificate inspection (days left, trust).
//! - [`certs`]: certificates over ACME (instant-acme): issue, renew (ARI), status, and
//!   `ensure` for deploy; tokens, chain and key placed on the hosts through a runner.
//! - [`operate`]: `operate`'s rounds: per host the live release, its container (restarted
//!   when down or unhealthy past a grace period), health, drift (idle container, Nginx
//!   against the render), the certificate (renewed when due); its JSON log and `/metrics`.
//! - [`check`]: check results shared by `health`, `doctor` and `operate` (text and `--json`).
//! - [`output`]: the reporter: colour only on a terminal, spinners, JSON.
//! - [`error`]: [`error::CliError`], each variant with the hint that tells the fix.
//! - [`actions`]: inside GitHub Actions: the step summary (Markdown), `::error` annotations at
//!   a stack file's key, `::group::` folds; nothing of it outside Actions.
//! - [`workflows`]: the GitHub Actions workflows `init --ci github` writes (the project's own
//!   `deploy.yml` is one of them).

pub mod actions;
pub mod args;
pub mod aws_spec;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod commands;
pub mod deploy;
pub mod doctor;
pub mod error;
pub mod health;
pub mod hosts;
pub mod image;
pub mod nginx;
pub mod operate;
pub mod output;
pub mod runner;
pub mod secret;
pub mod stack;
pub mod state;
pub mod tls;
pub mod workflows;
