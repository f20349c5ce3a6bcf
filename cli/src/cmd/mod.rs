//! One handler per subcommand (`cmd/<command>.rs`): each turns its parsed arguments
//! ([`crate::args`]) into calls of the library modules (stack, nginx, health, doctor, image,
//! runner, the AWS crate) and prints the outcome, text or `--json`. [`crate::cli`] parses and
//! calls [`dispatch`]; nothing here parses the command line. Two files are not subcommands:
//! `deploy_ecs` (what `deploy`/`rollback`/`releases`/`status` do for an ECS stack) and
//! `release` (the image a deploy ships and its local audit line, shared by both deploys).

pub mod apply;
mod aws_run;
pub mod build;
pub mod certs;
pub mod completions;
pub mod deploy;
mod deploy_ecs;
pub mod destroy;
pub mod doctor;
pub mod health;
pub mod init;
pub mod lock;
pub mod logs;
pub mod nginx;
pub mod operate;
pub mod plan;
pub mod push;
mod release;
pub mod releases;
pub mod secrets;
pub mod stack;
pub mod status;

use std::path::Path;

use crate::args::{Cli, Command, NginxCommand, StackCommand};
use crate::check::{Outcome, Report};
use crate::error::CliError;
use crate::output::Reporter;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli, r: Reporter) -> Result<(), CliError> {
    match cli.command {
        Command::Init(a) => init::run(&a, &r),
        Command::Stack(StackCommand::Check(a)) => stack::check(&a, &r),
        Command::Nginx(NginxCommand::Render(a)) => nginx::render(&a),
        Command::Health(a) => health::run(&a, &r).await,
        Command::Doctor(a) => doctor::run(&a, &r).await,
        Command::Lock(c) => lock::run(c, &r).await,
        Command::Build(a) => build::run(&a, &r).await,
        Command::Push(a) => push::run(&a, &r).await,
        Command::Plan(a) => plan::run(&a, &r).await,
        Command::Apply(a) => apply::run(&a, &r).await,
        Command::Destroy(a) => destroy::run(&a, &r).await,
        Command::Secrets(c) => secrets::run(&c, &r).await,
        Command::Deploy(a) => deploy::run(&a, &r).await,
        Command::Rollback(a) => deploy::rollback(&a, &r).await,
        Command::Releases(a) => releases::run(&a, &r).await,
        Command::Status(a) => status::run(&a, &r).await,
        Command::Logs(a) => logs::logs(&a).await,
        Command::Exec(a) => logs::exec(&a).await,
        Command::Certs(c) => certs::run(&c, &r).await,
        Command::Operate(a) => operate::run(&a, &r).await,
        Command::Completions(a) => {
            completions::run(&a);
            Ok(())
        }
    }
}

/// Writes a file a command produces, with the path in the error.
fn write_file(path: &Path, content: &str) -> Result<(), CliError> {
    std::fs::write(path, content).map_err(|source| CliError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

/// `health` and `doctor` exit 1 when any check failed (the report is already printed).
fn checks_result(report: &Report) -> Result<(), CliError> {
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

/// A usage error: what is wrong on the command line, and the fix.
fn usage(message: impl Into<String>, hint: impl Into<String>) -> CliError {
    CliError::Usage {
        message: message.into(),
        hint: hint.into(),
    }
}
