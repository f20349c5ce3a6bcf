//! `plan`, `apply`, `destroy` and `secrets set|list|rm`: the CLI side of the AWS boundary.
//! Turns a stack file into a [`fullslack_aws::StackSpec`] (reading the public key; the plan
//! depends on the stack file and AWS only), prints plans, takes the stack's lock around
//! `apply` and `destroy`, asks before changing anything, and reads secret values from
//! standard input or a silent prompt (never from the command line).

use std::io::{IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use fullslack_aws::{Aws, AwsError, Ec2Spec, EcsSpec, Plan, SecretString, StackSpec, TargetSpec};

use crate::args::{StackArg, StackOpt, DEFAULT_STACK};
use crate::error::CliError;
use crate::output::Reporter;
use crate::secret::SecretRef;
use crate::stack::{self, Stack, Target};

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

/// Default wait for instances and services.
const DEFAULT_WAIT_SECS: u64 = 600;

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

fn region_of(s: &Stack) -> Result<String, CliError> {
    match (s.target, &s.ec2, &s.ecs) {
        (Target::Ec2, Some(e), _) => Ok(e.region.clone()),
        (Target::Ecs, _, Some(e)) => Ok(e.region.clone()),
        _ => Err(AwsError::invalid(
            format!(
                "stack `{}` has target `{}`, which has no AWS resources",
                s.name,
                s.target.as_str()
            ),
            "plan/apply/destroy and secrets work on `ec2` and `ecs` stacks",
        )
        .into()),
    }
}

/// `~/…` → `$HOME/…`.
fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => PathBuf::from(p),
    }
}

/// Checks `addr/len`; returns whether it opens to everyone (prefix length 0).
fn check_cidr(cidr: &str) -> Result<bool, AwsError> {
    let bad = || {
        AwsError::invalid(
            format!("ec2.ssh_cidr `{cidr}` is not a CIDR block"),
            "write an address and prefix length, e.g. 203.0.113.7/32",
        )
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(len == 0)
}

/// Builds the AWS crate's input from a validated stack.
pub async fn spec_of(s: &Stack, opts: &AwsOpts, for_destroy: bool) -> Result<StackSpec, CliError> {
    let region = region_of(s)?;
    let ecr_repository = (s.image.registry.as_deref() == Some("ecr")).then(|| s.image.name.clone());
    let target = match (s.target, &s.ec2, &s.ecs) {
        (Target::Ec2, Some(e), _) => {
            // A destroy needs neither the address nor the key: it removes by tag. Without
            // ec2.ssh_cidr port 22 stays closed (the plan says so): the plan must not depend
            // on who runs it.
            let ssh_cidr = if for_destroy {
                None
            } else {
                e.ssh_cidr.clone()
            };
            let open_to_all = match &ssh_cidr {
                Some(c) => check_cidr(c)?,
                None => false,
            };
            if let (true, false, Some(ssh_cidr)) =
                (open_to_all, opts.allow_ssh_from_anywhere, &ssh_cidr)
            {
                return Err(AwsError::invalid(
                    format!("ec2.ssh_cidr `{ssh_cidr}` opens SSH to the whole internet"),
                    "use your own address (e.g. 203.0.113.7/32), or pass --allow-ssh-from-anywhere if you really mean it",
                )
                .into());
            }
            let public_key = match (&e.public_key_file, for_destroy) {
                (Some(f), false) => {
                    let path = expand_home(f);
                    let key = std::fs::read_to_string(&path).map_err(|source| CliError::Io {
                        action: "cannot read the public key",
                        path: path.clone(),
                        source,
                    })?;
                    let key = key.trim().to_string();
                    if !(key.starts_with("ssh-") || key.starts_with("ecdsa-")) {
                        return Err(AwsError::invalid(
                            format!("{} is not an OpenSSH public key", path.display()),
                            "point ec2.public_key_file at a `.pub` file (ssh-keygen -t ed25519 makes one)",
                        )
                        .into());
                    }
                    Some(key)
                }
                _ => None,
            };
            // An imported key gets a name of the stack's own unless the stack names one.
            let key_name = e.key_name.clone().or_else(|| {
                e.public_key_file
                    .as_ref()
                    .map(|_| format!("fullslack-{}", s.name))
            });
            TargetSpec::Ec2(Ec2Spec {
                instance_type: e.instance_type.clone(),
                count: e.count,
                ami: e.ami.clone(),
                key_name,
                public_key,
                volume_gb: e.volume_gb,
                subnet_id: e.subnet_id.clone(),
                ssh_cidr,
            })
        }
        (Target::Ecs, _, Some(e)) => {
            let mut secrets = std::collections::BTreeMap::new();
            for (k, v) in &s.secrets {
                if let SecretRef::Ssm(p) = v {
                    secrets.insert(k.clone(), p.clone());
                }
            }
            // External Redis/MongoDB URLs carry credentials: the tasks get them from SSM too,
            // under the chat server's own setting names.
            for (var, svc) in [
                ("FULLSLACK_REDIS_URL", &s.redis),
                ("FULLSLACK_STORE_URL", &s.mongodb),
            ] {
                if let Some(SecretRef::Ssm(p)) = &svc.url {
                    secrets.entry(var.to_string()).or_insert_with(|| p.clone());
                }
            }
            // The server must listen on the container port on every interface (the ALB and
            // the health check reach it there).
            let mut env = s.app.env.clone();
            env.entry("FULLSLACK_LISTEN".into())
                .or_insert_with(|| format!("0.0.0.0:{}", s.app.port));
            let image = match &s.image.registry {
                Some(r) if r != "ecr" => format!("{r}/{}", s.image.name),
                _ => s.image.name.clone(),
            };
            TargetSpec::Ecs(EcsSpec {
                cluster: e
                    .cluster
                    .clone()
                    .unwrap_or_else(|| format!("fullslack-{}", s.name)),
                cpu: e.cpu,
                memory: e.memory,
                subnets: e.subnets.clone(),
                security_groups: e.security_groups.clone(),
                certificate_arn: e.certificate_arn.clone(),
                execution_role_arn: e.execution_role_arn.clone(),
                image,
                tag: s.image.tag.clone(),
                desired_count: s.app.replicas,
                port: s.app.port,
                health_path: s.health.path.clone(),
                env,
                secrets,
            })
        }
        _ => {
            return Err(AwsError::invalid(
                format!(
                    "stack `{}` has target `{}`, which has no AWS resources",
                    s.name,
                    s.target.as_str()
                ),
                "plan/apply/destroy work on `ec2` and `ecs` stacks",
            )
            .into())
        }
    };
    Ok(StackSpec {
        name: s.name.clone(),
        region,
        ecr_repository,
        wait_timeout_secs: opts.wait_timeout.unwrap_or(DEFAULT_WAIT_SECS),
        target,
    })
}

fn print_plan(plan: &Plan, r: &Reporter) {
    if r.json {
        r.print_json(plan);
    } else {
        print!("{}", plan.render());
    }
}

fn write_plan(plan: &Plan, path: &Path) -> Result<(), CliError> {
    let json = serde_json::to_string_pretty(plan).map_err(|e| {
        AwsError::invalid(format!("cannot encode the plan: {e}"), "report this bug")
    })?;
    std::fs::write(path, json + "\n").map_err(|source| CliError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

fn read_plan(path: &Path) -> Result<Plan, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| {
        AwsError::invalid(
            format!("{} is not a fullslack plan: {e}", path.display()),
            "make one with `fullslack plan --stack FILE --out PLAN`",
        )
        .into()
    })
}

/// `fullslack plan`: exit 0 without changes, 2 with changes (`CliError::PendingChanges`).
pub async fn plan(a: &PlanArgs, r: &Reporter) -> Result<(), CliError> {
    let s = stack::load(&a.stack.stack)?;
    let spec = spec_of(&s, &a.opts, false).await?;
    let aws = Aws::connect(&spec.region).await?;
    let plan = fullslack_aws::plan(&aws, &spec).await?;
    print_plan(&plan, r);
    if let Some(out) = &a.out {
        write_plan(&plan, out)?;
        if !r.json {
            println!(
                "\nSaved the plan to {}: apply it with `fullslack apply {}`.",
                out.display(),
                out.display()
            );
        }
    }
    if plan.is_empty() {
        Ok(())
    } else {
        Err(CliError::PendingChanges)
    }
}

fn confirm(question: &str) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage {
            message: "refusing to change AWS without confirmation (standard input is not a terminal)".into(),
            hint: "review the plan above and pass --yes, or save it with `fullslack plan --out PLAN` and run `fullslack apply PLAN`".into(),
        });
    }
    eprint!("{question} Only `yes` is accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|source| CliError::Io {
            action: "cannot read",
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    Ok(line.trim() == "yes")
}

async fn run_plan(aws: &Aws, plan: &Plan, r: &Reporter) -> Result<(), CliError> {
    let json = r.json;
    let say = move |line: String| {
        if json {
            tracing::info!("{line}");
        } else {
            println!("  {line}");
        }
    };
    fullslack_aws::apply(aws, plan, &say).await?;
    // What people need next: the addresses to point DNS at.
    let have = fullslack_aws::read_actual(aws, &plan.stack, &plan.target, &plan.lookup).await?;
    let outputs: Vec<serde_json::Value> = have
        .iter()
        .filter_map(|res| {
            let ip = res.input("public_ip");
            let dns = res.input("dns_name");
            match (res.kind, ip.is_empty(), dns.is_empty()) {
                (fullslack_aws::Kind::ElasticIp, false, _) => {
                    Some(serde_json::json!({"resource": res.label(), "public_ip": ip}))
                }
                (fullslack_aws::Kind::LoadBalancer, _, false) => {
                    Some(serde_json::json!({"resource": res.label(), "dns_name": dns}))
                }
                _ => None,
            }
        })
        .collect();
    if r.json {
        r.print_json(&serde_json::json!({"applied": plan.changes.len(), "outputs": outputs}));
    } else {
        let verb = if plan.destroy { "Destroyed" } else { "Applied" };
        println!(
            "{verb}: {} change(s) to stack `{}`.",
            plan.changes.len(),
            plan.stack
        );
        for o in &outputs {
            let v = o
                .get("public_ip")
                .or_else(|| o.get("dns_name"))
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            println!("  {}: {v}", o["resource"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}

/// Takes the stack's lock (breaking a stale one first when asked).
async fn take_lock(
    aws: &Aws,
    stack: &str,
    command: &str,
    l: &LockOpts,
    r: &Reporter,
) -> Result<fullslack_aws::lock::Lock, CliError> {
    let json = r.json;
    let say = move |line: String| {
        if json {
            tracing::warn!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    if l.break_lock {
        match fullslack_aws::lock::break_lock(aws, stack).await? {
            Some(h) => say(format!(
                "broke the lock of stack `{stack}` held by {} since {} ({})",
                h.holder, h.since, h.command
            )),
            None => say(format!("stack `{stack}` was not locked")),
        }
    }
    Ok(fullslack_aws::lock::acquire(aws, stack, command, l.lock_wait, &say).await?)
}

/// Runs `work` under the stack's lock and releases it whatever `work` returned.
async fn locked<F, Fut>(
    aws: &Aws,
    stack: &str,
    command: &str,
    l: &LockOpts,
    r: &Reporter,
    work: F,
) -> Result<(), CliError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let lock = take_lock(aws, stack, command, l, r).await?;
    let out = work().await;
    let released = fullslack_aws::lock::release(aws, &lock).await;
    match (out, released) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e.into()),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn cancelled(what: &str) -> CliError {
    AwsError::invalid(
        format!("{what} cancelled"),
        "nothing was changed; only `yes` confirms",
    )
    .into()
}

/// `fullslack apply PLAN` or `fullslack apply --stack FILE [--yes]`.
pub async fn apply(a: &ApplyArgs, r: &Reporter) -> Result<(), CliError> {
    match &a.plan {
        Some(p) => {
            let mut plan = read_plan(p)?;
            // An explicit --wait-timeout wins over the one saved in the plan.
            if let Some(secs) = a.opts.wait_timeout {
                plan.wait_timeout_secs = secs;
            }
            let aws = Aws::connect(&plan.region).await?;
            let stack = plan.stack.clone();
            // apply re-reads AWS under the lock: a plan another run made stale is refused.
            locked(&aws, &stack, "apply", &a.lock, r, || async {
                show_and_run(&aws, &plan, r, false).await
            })
            .await
        }
        None => {
            let path = a
                .stack
                .stack
                .clone()
                .unwrap_or_else(|| DEFAULT_STACK.into());
            let s = stack::load(&path)?;
            let spec = spec_of(&s, &a.opts, false).await?;
            let aws = Aws::connect(&spec.region).await?;
            // Plan under the lock: a second apply waits, then plans what the first left.
            locked(&aws, &spec.name, "apply", &a.lock, r, || async {
                let plan = fullslack_aws::plan(&aws, &spec).await?;
                show_and_run(&aws, &plan, r, !a.yes).await
            })
            .await
        }
    }
}

async fn show_and_run(aws: &Aws, plan: &Plan, r: &Reporter, ask: bool) -> Result<(), CliError> {
    if !r.json {
        print!("{}", plan.render());
        println!();
    }
    if plan.is_empty() {
        if r.json {
            r.print_json(&serde_json::json!({"applied": 0, "outputs": []}));
        } else {
            println!("Nothing to do.");
        }
        return Ok(());
    }
    if ask && !confirm("Apply these changes?")? {
        return Err(cancelled("apply"));
    }
    run_plan(aws, plan, r).await
}

/// `fullslack destroy --stack FILE [--yes]`: shows what goes, asks, removes it.
pub async fn destroy(a: &DestroyArgs, r: &Reporter) -> Result<(), CliError> {
    let s = stack::load(&a.stack.stack)?;
    let spec = spec_of(&s, &a.opts, true).await?;
    let aws = Aws::connect(&spec.region).await?;
    locked(&aws, &spec.name, "destroy", &a.lock, r, || async {
        let plan = fullslack_aws::plan_destroy(&aws, &spec).await?;
        if !r.json {
            print!("{}", plan.render());
            println!();
        }
        if plan.is_empty() {
            if r.json {
                r.print_json(&serde_json::json!({"applied": 0, "outputs": []}));
            } else {
                println!(
                    "Nothing to destroy: no resource is tagged fullslack:stack={}.",
                    s.name
                );
            }
            return Ok(());
        }
        if !a.yes
            && !confirm(&format!(
                "Destroy everything of stack `{}` listed above?",
                s.name
            ))?
        {
            return Err(cancelled("destroy"));
        }
        run_plan(&aws, &plan, r).await
    })
    .await
}

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
        return Ok(SecretString::new(v));
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
    Ok(SecretString::new(line.trim_end_matches(['\n', '\r'])))
}

/// `fullslack secrets …`.
pub async fn secrets(c: &SecretsCommand, r: &Reporter) -> Result<(), CliError> {
    match c {
        SecretsCommand::Set { name, stack } => {
            let s = stack::load(&stack.stack)?;
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
            let s = stack::load(&stack.stack)?;
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
            let s = stack::load(&stack.stack)?;
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

/// Fresh ECR credentials for the stack's region (tokens last 12 h: never cached).
pub async fn ecr_auth(s: &Stack) -> Result<fullslack_aws::ecr::RegistryAuth, CliError> {
    let aws = Aws::connect(&region_of(s)?).await?;
    Ok(fullslack_aws::ecr::registry_auth(&aws).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_checks() {
        assert_eq!(check_cidr("203.0.113.7/32").ok(), Some(false));
        assert_eq!(check_cidr("0.0.0.0/0").ok(), Some(true));
        assert_eq!(check_cidr("::/0").ok(), Some(true));
        assert!(check_cidr("203.0.113.7").is_err());
        assert!(check_cidr("203.0.113.7/33").is_err());
        assert!(check_cidr("example.com/32").is_err());
    }
}
