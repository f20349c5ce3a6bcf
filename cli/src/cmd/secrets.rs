//! `fullslack secrets set|list|rm`: SSM SecureStrings under `/<stack>/<NAME>`. A value comes
//! from standard input or a silent prompt, never from the command line.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use fullslack_aws::{Aws, SecretString};

use crate::args::SecretsCommand;
use crate::aws_spec::region_of;
use crate::error::CliError;
use crate::output::Reporter;

/// Reads a secret value: all of standard input when it is piped, else a prompt without echo.
fn read_secret_value(name: &str) -> Result<SecretString, CliError> {
    let io_err = |source| CliError::Io {
        action: "cannot read",
        path: PathBuf::from("<stdin>"),
        source,
    };
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut v = String::new();
        stdin.lock().read_to_string(&mut v).map_err(io_err)?;
        // One trailing newline comes from `echo` or a file: not part of the value.
        let v = v
            .strip_suffix('\n')
            .map(|v| v.strip_suffix('\r').unwrap_or(v))
            .unwrap_or(&v);
        return Ok(SecretString::from(v));
    }
    eprint!("Value for {name} (not shown): ");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let silenced = stty("-echo");
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if silenced {
        stty("echo");
    }
    eprintln!();
    read.map_err(io_err)?;
    Ok(SecretString::from(line.trim_end_matches(['\n', '\r'])))
}

/// `fullslack secrets …`.
pub async fn run(c: &SecretsCommand, r: &Reporter) -> Result<(), CliError> {
    match c {
        SecretsCommand::Set { name, stack } => {
            let s = crate::stack::load(&stack.stack)?;
            let region = region_of(&s)?;
            let param = fullslack_aws::ssm::parameter_name(&s.name, name)?;
            let value = read_secret_value(name)?;
            let aws = Aws::connect(&region).await?;
            let version = fullslack_aws::ssm::put(&aws, &s.name, name, &value).await?;
            if r.json {
                r.print_json(&serde_json::json!({"parameter": param, "version": version}));
            } else {
                println!("stored {param} (SecureString, version {version}); reference it as {{ ssm = \"{param}\" }}");
            }
        }
        SecretsCommand::List { stack } => {
            let s = crate::stack::load(&stack.stack)?;
            let aws = Aws::connect(&region_of(&s)?).await?;
            let list = fullslack_aws::ssm::list(&aws, &s.name).await?;
            if r.json {
                r.print_json(&list);
            } else if list.is_empty() {
                println!("stack `{}` has no secrets under /{}/ (add one with `fullslack secrets set NAME`)", s.name, s.name);
            } else {
                for i in &list {
                    println!(
                        "{:<32} version {:<4} {}",
                        i.parameter,
                        i.version,
                        i.last_modified.as_deref().unwrap_or("")
                    );
                }
            }
        }
        SecretsCommand::Rm { name, stack } => {
            let s = crate::stack::load(&stack.stack)?;
            let aws = Aws::connect(&region_of(&s)?).await?;
            fullslack_aws::ssm::delete(&aws, &s.name, name).await?;
            let param = fullslack_aws::ssm::parameter_name(&s.name, name)?;
            if r.json {
                r.print_json(&serde_json::json!({"deleted": param}));
            } else {
                println!("deleted {param}");
            }
        }
    }
    Ok(())
}
