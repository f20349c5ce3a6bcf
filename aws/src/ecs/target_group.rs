//! The target group of an ECS stack's load balancer: the tasks by IP on the app port, checked
//! on the stack's health path (`/readyz`).

use aws_sdk_elasticloadbalancingv2::types::{Matcher, ProtocolEnum, TargetTypeEnum};

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

/// The stack's target group (by name, checked against the stack tag), and its ARN, which
/// listeners and the service name it by.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
) -> Result<(Vec<Resource>, Option<String>), AwsError> {
    let name = lb_name(stack);
    let mut out = Vec::new();
    let mut tg_arn = None;
    let tgs = match aws.elb().describe_target_groups().names(&name).send().await {
        Ok(tgs) => tgs,
        Err(e) => {
            let e = AwsError::from_sdk("elasticloadbalancing:DescribeTargetGroups", e);
            if e.kind() != Some(crate::ErrorKind::NotFound) {
                return Err(e);
            }
            return Ok((out, tg_arn));
        }
    };
    for tg in tgs.target_groups() {
        let arn = tg.target_group_arn().unwrap_or_default().to_string();
        if !lb_tags_ours(aws, &arn, stack).await? {
            continue;
        }
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
            .extra("aws_name", name.as_str());
        r.id = Some(arn.clone());
        tg_arn = Some(arn);
        out.push(r);
    }
    Ok((out, tg_arn))
}

/// Runs one target group change.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let elb = step.aws.elb();
    match ch.action {
        Action::Create | Action::Replace => create(step, ch).await?,
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

/// A new target group; a replaced one is deleted first (its name is taken).
async fn create(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let elb = step.aws.elb();
    if ch.action == Action::Replace {
        if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
            elb.delete_target_group()
                .target_group_arn(old)
                .send()
                .await
                .ctx("elasticloadbalancing:DeleteTargetGroup")?;
        }
    }
    let out = elb
        .create_target_group()
        .name(r.input("aws_name"))
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
        "created target group {} (health check {})",
        r.input("aws_name"),
        r.text("health_path")
    ));
    step.remember(r.kind, &r.name, arn);
    Ok(())
}
