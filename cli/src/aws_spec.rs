//! A stack file as the `fullslack-aws` crate's input: [`spec_of`] turns a validated `ec2` or
//! `ecs` stack into a [`StackSpec`] (reading the SSH public key; the plan depends on the stack
//! file and AWS only, never on who runs it). Also the stack's region and fresh ECR
//! credentials, for `secrets` and `push`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use fullslack_aws::{Aws, AwsError, Ec2Spec, EcsSpec, StackSpec, TargetSpec};

use crate::args::AwsOpts;
use crate::error::CliError;
use crate::secret::SecretRef;
use crate::stack::{Ec2, Ecs, Stack, TargetSettings};

/// Default wait for instances and services.
const DEFAULT_WAIT_SECS: u64 = 600;

fn not_aws(s: &Stack, hint: &str) -> CliError {
    AwsError::invalid(
        format!(
            "stack `{}` has target `{}`, which has no AWS resources",
            s.name,
            s.target.as_str()
        ),
        hint,
    )
    .into()
}

/// The region of an `ec2` or `ecs` stack.
pub fn region_of(s: &Stack) -> Result<String, CliError> {
    s.aws_region().map(str::to_string).ok_or_else(|| {
        not_aws(
            s,
            "plan/apply/destroy and secrets work on `ec2` and `ecs` stacks",
        )
    })
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
    let target = match s.target_settings() {
        TargetSettings::Ec2(Some(e)) => TargetSpec::Ec2(ec2_spec(s, e, opts, for_destroy)?),
        TargetSettings::Ecs(Some(e)) => TargetSpec::Ecs(ecs_spec(s, e)),
        _ => {
            return Err(not_aws(
                s,
                "plan/apply/destroy work on `ec2` and `ecs` stacks",
            ))
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

fn ec2_spec(s: &Stack, e: &Ec2, opts: &AwsOpts, for_destroy: bool) -> Result<Ec2Spec, CliError> {
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
    if let (true, false, Some(ssh_cidr)) = (open_to_all, opts.allow_ssh_from_anywhere, &ssh_cidr) {
        return Err(AwsError::invalid(
            format!("ec2.ssh_cidr `{ssh_cidr}` opens SSH to the whole internet"),
            "use your own address (e.g. 203.0.113.7/32), or pass --allow-ssh-from-anywhere if you really mean it",
        )
        .into());
    }
    let public_key = match (&e.public_key_file, for_destroy) {
        (Some(f), false) => Some(read_public_key(f)?),
        _ => None,
    };
    // An imported key gets a name of the stack's own unless the stack names one.
    let key_name = e.key_name.clone().or_else(|| {
        e.public_key_file
            .as_ref()
            .map(|_| format!("fullslack-{}", s.name))
    });
    Ok(Ec2Spec {
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

/// Reads `ec2.public_key_file` and checks that it is an OpenSSH public key.
fn read_public_key(file: &str) -> Result<String, CliError> {
    let path = expand_home(file);
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
    Ok(key)
}

fn ecs_spec(s: &Stack, e: &Ecs) -> EcsSpec {
    let mut secrets = BTreeMap::new();
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
    EcsSpec {
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
    }
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
