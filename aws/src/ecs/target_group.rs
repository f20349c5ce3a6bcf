//! The target group of an ECS stack's load balancer: the tasks by IP on the app port, checked
//! on the stack's health path (`/readyz`).
//!
//! A target group's port and VPC cannot change, and AWS refuses to delete a group a listener
//! or a service still uses, so a replacement is create-before-destroy: the new group is made
//! under another name (names are unique per region), the listeners forward to it at once, the
//! service moves to it in its own step ([`super::service`]), and the old group is deleted only
//! after every other step ([`retire_replaced`]). Both names are the stack's: [`actual`] finds
//! either, checked against the stack tag.

use aws_sdk_elasticloadbalancingv2::types::{
    Action as LbAction, ActionTypeEnum, Matcher, ProtocolEnum, TargetGroup, TargetTypeEnum,
};

use super::{lb_name, lb_tags_ours};
use crate::error::SdkResultExt;
use crate::family::{lb_tags, retry_conflict, Step};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource};
use crate::spec::EcsSpec;
use crate::{Aws, AwsError};

/// The target group as the stack wants it.
pub(crate) fn desired(stack: &str, e: &EcsSpec, vpc: &str) -> Resource {
    Resource::new(Kind::TargetGroup, stack)
        .attr("port", e.port.to_string())
        .attr("protocol", "HTTP")
        .attr("target_type", "ip")
        .attr("vpc", vpc)
        .attr("health_path", e.health_path.as_str())
        .attr("matcher", "200")
        .extra("aws_name", lb_name(stack))
}

/// The name of a replacement group: the stack's name with the port as a suffix, or the
/// stack's plain name when the old group already has that suffixed name (a replacement for
/// another VPC on the same port). Never the old group's name, which is still taken.
fn replacement_name(stack: &str, port: &str, old: &str) -> String {
    let suffix = format!("-p{port}");
    let mut base = lb_name(stack);
    base.truncate(32 - suffix.len());
    let named = format!("{}{suffix}", base.trim_end_matches('-'));
    if named == old {
        lb_name(stack)
    } else {
        named
    }
}

/// Whether `name` is one [`desired`] or [`replacement_name`] gives the stack (the stack tag
/// decides whether it really is the stack's).
fn is_stack_name(stack: &str, name: &str) -> bool {
    name == lb_name(stack)
        || name.rsplit_once("-p").is_some_and(|(_, port)| {
            port.chars().all(|c| c.is_ascii_digit()) && replacement_name(stack, port, "") == name
        })
}

/// The stack's target group (by name, checked against the stack tag), and its ARN, which
/// listeners and the service name it by.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
) -> Result<(Vec<Resource>, Option<String>), AwsError> {
    let mut out = Vec::new();
    let mut tg_arn = None;
    // Listed whole and filtered: a by-name lookup fails outright when one name is missing.
    let mut pages = aws.elb().describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.ctx("elasticloadbalancing:DescribeTargetGroups")?;
        for tg in page.target_groups() {
            let name = tg.target_group_name().unwrap_or_default();
            let arn = tg.target_group_arn().unwrap_or_default().to_string();
            if !is_stack_name(stack, name) || !lb_tags_ours(aws, &arn, stack).await? {
                continue;
            }
            out.push(target_group_of(tg, stack));
            tg_arn = Some(arn);
        }
    }
    Ok((out, tg_arn))
}

/// One target group as a resource.
fn target_group_of(tg: &TargetGroup, stack: &str) -> Resource {
    let mut r = Resource::new(Kind::TargetGroup, stack)
        .attr("port", tg.port().map(|p| p.to_string()).unwrap_or_default())
        .attr(
            "protocol",
            tg.protocol().map(ProtocolEnum::as_str).unwrap_or_default(),
        )
        .attr(
            "target_type",
            tg.target_type()
                .map(TargetTypeEnum::as_str)
                .unwrap_or_default(),
        )
        .attr("vpc", tg.vpc_id().unwrap_or_default())
        .attr("health_path", tg.health_check_path().unwrap_or_default())
        .attr(
            "matcher",
            tg.matcher().and_then(|m| m.http_code()).unwrap_or_default(),
        )
        .extra("aws_name", tg.target_group_name().unwrap_or_default());
    r.id = tg.target_group_arn().map(str::to_string);
    r
}

/// Runs one target group change.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let elb = step.aws.elb();
    match ch.action {
        Action::Create => {
            create(step, r, r.input("aws_name")).await?;
        }
        Action::Replace => replace(step, ch).await?,
        Action::Update => {
            let arn = step.id_of(r.kind, &r.name)?;
            elb.modify_target_group()
                .target_group_arn(arn)
                .health_check_path(r.text("health_path"))
                .matcher(Matcher::builder().http_code(r.text("matcher")).build())
                .send()
                .await
                .ctx("elasticloadbalancing:ModifyTargetGroup")?;
            step.say(format!(
                "target group {}: health check {}",
                r.name,
                r.text("health_path")
            ));
        }
        Action::Delete => {
            let arn = r.id.clone().unwrap_or_default();
            // The load balancer's deletion finishes asynchronously; until then the group is
            // still in use.
            retry_conflict(step.timeout, || async {
                elb.delete_target_group()
                    .target_group_arn(&arn)
                    .send()
                    .await
                    .ctx("elasticloadbalancing:DeleteTargetGroup")
                    .map(|_| ())
            })
            .await?;
            step.say(format!("deleted target group {}", r.name));
        }
    }
    Ok(())
}

/// A new target group named `aws_name`; its ARN is remembered for the listeners and the
/// service.
async fn create(step: &mut Step<'_>, r: &Resource, aws_name: &str) -> Result<String, AwsError> {
    let out = step
        .aws
        .elb()
        .create_target_group()
        .name(aws_name)
        .protocol(ProtocolEnum::Http)
        .port(r.text("port").parse().unwrap_or(8080))
        .vpc_id(r.text("vpc"))
        .target_type(TargetTypeEnum::Ip)
        .health_check_path(r.text("health_path"))
        .health_check_enabled(true)
        .matcher(Matcher::builder().http_code(r.text("matcher")).build())
        .set_tags(Some(lb_tags(step.stack, &r.name)))
        .send()
        .await
        .ctx("elasticloadbalancing:CreateTargetGroup")?;
    let arn = out
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .unwrap_or_default()
        .to_string();
    step.say(format!(
        "created target group {aws_name} (health check {})",
        r.text("health_path")
    ));
    step.remember(r.kind, &r.name, arn.clone());
    Ok(arn)
}

/// Create-before-destroy (see the module doc): the new group under another name, the
/// listeners that forward to the old group moved to it, the old group left to
/// [`retire_replaced`].
async fn replace(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let before = ch.before.as_ref();
    let old_name = before.map_or("", |b| b.input("aws_name"));
    let name = replacement_name(step.stack, r.text("port"), old_name);
    let arn = create(step, r, &name).await?;
    let Some(old_arn) = before.and_then(|b| b.id.clone()) else {
        return Ok(());
    };
    if let Ok(lb) = step.id_of(Kind::LoadBalancer, step.stack) {
        repoint_listeners(step, &lb, &old_arn, &arn).await?;
    }
    step.retire.push((r.kind, r.name.clone(), old_arn));
    Ok(())
}

/// Points every listener of load balancer `lb` that forwards to `old` at `new`.
async fn repoint_listeners(
    step: &Step<'_>,
    lb: &str,
    old: &str,
    new: &str,
) -> Result<(), AwsError> {
    let elb = step.aws.elb();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .ctx("elasticloadbalancing:DescribeListeners")?;
    for l in listeners.listeners() {
        let forwards_old = l.default_actions().iter().any(|a| {
            a.r#type() == Some(&ActionTypeEnum::Forward) && a.target_group_arn() == Some(old)
        });
        if !forwards_old {
            continue;
        }
        elb.modify_listener()
            .listener_arn(l.listener_arn().unwrap_or_default())
            .default_actions(
                LbAction::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(new)
                    .build(),
            )
            .send()
            .await
            .ctx("elasticloadbalancing:ModifyListener")?;
        step.say(format!(
            "listener {}-{}: forwards to the new target group",
            l.protocol()
                .map(ProtocolEnum::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            l.port().unwrap_or_default()
        ));
    }
    Ok(())
}

/// Deletes the target groups replacements left behind, once the listeners and the service
/// use the new ones.
pub(crate) async fn retire_replaced(step: &Step<'_>) -> Result<(), AwsError> {
    let elb = step.aws.elb();
    for (_, name, arn) in step.retire.iter().filter(|r| r.0 == Kind::TargetGroup) {
        // The service lets go of the old group as its deployment drains; until then AWS
        // reports it in use.
        retry_conflict(step.timeout, || async {
            elb.delete_target_group()
                .target_group_arn(arn)
                .send()
                .await
                .ctx("elasticloadbalancing:DeleteTargetGroup")
                .map(|_| ())
        })
        .await?;
        step.say(format!("deleted the replaced target group {name} ({arn})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_never_takes_the_old_name_and_is_found_again() {
        let first = replacement_name("tab", "9090", "fs-tab");
        assert_eq!(first, "fs-tab-p9090");
        assert_eq!(replacement_name("tab", "9090", &first), "fs-tab");
        let long = replacement_name("a-very-long-stack-name-that-goes-on-", "65535", "x");
        assert!(long.len() <= 32 && long.ends_with("-p65535"));
        for name in ["fs-tab", first.as_str()] {
            assert!(is_stack_name("tab", name));
        }
        assert!(is_stack_name("a-very-long-stack-name-that-goes-on-", &long));
        assert!(!is_stack_name("tab", "fs-tabby"));
        assert!(!is_stack_name("tab", "fs-other-p80"));
    }
}
