//! The hosts a command connects to: `[[hosts]]` as the stack file lists them, or, for an `ec2`
//! stack (which lists none: AWS chooses the addresses), the instances `apply` made, found by
//! the stack's tags exactly as `plan` finds them. `lock`, `doctor` and deploys all go through
//! here, so "the stack lists no hosts" cannot happen after an apply.

use crate::error::CliError;
use crate::stack::{Host, Stack, TargetSettings};

/// Fills `stack.hosts` from AWS for an `ec2` stack that lists none; any other stack is left
/// as written. Returns how the hosts were found, for messages (`stack file`, `EC2 tags`).
pub async fn resolve(stack: &mut Stack) -> Result<&'static str, CliError> {
    if !stack.hosts.is_empty() {
        return Ok("stack file");
    }
    let TargetSettings::Ec2(Some(ec2)) = stack.target_settings() else {
        return Ok("stack file");
    };
    let aws = fullslack_aws::Aws::connect(&ec2.region).await?;
    let found = fullslack_aws::hosts::ec2_hosts(&aws, &stack.name).await?;
    if found.is_empty() {
        return Err(CliError::Failed {
            message: format!(
                "stack `{}` has no running EC2 instances in {} (looked up by the tag fullslack:stack={})",
                stack.name, ec2.region, stack.name
            ),
            hint: "create them with `fullslack apply --stack FILE` (`fullslack plan` shows what it makes)".into(),
        });
    }
    stack.hosts = found
        .iter()
        .filter_map(|h| {
            Some(Host {
                address: h.address()?.to_string(),
                ipv4: h.public_ipv4.clone(),
                ipv6: h.ipv6.clone(),
                roles: Vec::new(),
                user: None,
                port: None,
                name: None,
                app_port: None,
                http_port: None,
            })
        })
        .collect();
    Ok("EC2 tags")
}
