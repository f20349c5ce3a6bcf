//! The application load balancer of an ECS stack: its security group (web from anywhere), the
//! ALB itself in the stack's subnets, and its listeners (80 forwards, or redirects to 443 when
//! the stack has a certificate; 443 forwards with that certificate).

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action as LbAction, ActionTypeEnum, Certificate, Listener, LoadBalancerSchemeEnum,
    LoadBalancerTypeEnum, ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum,
};

use super::{lb_name, lb_tags_ours};
use crate::ec2::security_group::{group_refs, resolve_groups};
use crate::error::SdkResultExt;
use crate::family::{lb_tags, Ids, Step};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource, Value};
use crate::spec::EcsSpec;
use crate::{Aws, AwsError};

/// `arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID`, in the stack's region (an ALB only
/// takes certificates of its own region). Checked at plan time so that apply never creates
/// the redirect listener and then fails on the HTTPS one.
pub fn check_certificate_arn(arn: &str, region: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let shaped = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "acm"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("certificate/")
            .is_some_and(|id| !id.is_empty());
    if !shaped {
        return Err(AwsError::invalid(
            format!("ecs.certificate_arn `{arn}` is not an ACM certificate ARN"),
            "copy the ARN from ACM: arn:aws:acm:REGION:ACCOUNT:certificate/ID",
        ));
    }
    if parts[3] != region {
        return Err(AwsError::invalid(
            format!(
                "ecs.certificate_arn is in region {}, the stack in {region}",
                parts[3]
            ),
            format!("a load balancer only takes certificates of its own region: request or import one in ACM in {region}"),
        ));
    }
    Ok(())
}

/// The load balancer's own security group: web traffic from anywhere.
pub(crate) fn security_group(stack: &str, vpc: &str) -> Resource {
    let alb_sg = format!("{stack}-alb");
    Resource::new(Kind::SecurityGroup, alb_sg.as_str())
        .attr("vpc", vpc)
        .attr(
            "ingress",
            Value::set(["tcp/80 from 0.0.0.0/0", "tcp/443 from 0.0.0.0/0"]),
        )
        .extra("group_name", format!("fullslack-{alb_sg}"))
        .extra(
            "description",
            format!("fullslack stack {stack}: load balancer, web from anywhere"),
        )
}

/// The load balancer as the stack wants it.
pub(crate) fn desired(stack: &str, e: &EcsSpec) -> Resource {
    Resource::new(Kind::LoadBalancer, stack)
        .attr("scheme", "internet-facing")
        .attr("subnets", Value::set(e.subnets.iter().cloned()))
        .attr(
            "security_groups",
            Value::set([format!("group:{stack}-alb")]),
        )
        .extra("aws_name", lb_name(stack))
}

/// The listeners as the stack wants them.
pub(crate) fn listeners(stack: &str, e: &EcsSpec) -> Vec<Resource> {
    let http_action = if e.certificate_arn.is_some() {
        "redirect to https".to_string()
    } else {
        format!("forward to {stack}")
    };
    let mut out = vec![Resource::new(Kind::Listener, "http-80")
        .attr("port", "80")
        .attr("protocol", "HTTP")
        .attr("action", http_action)
        .extra("load_balancer", stack)
        .extra("target_group", stack)];
    if let Some(cert) = &e.certificate_arn {
        out.push(
            Resource::new(Kind::Listener, "https-443")
                .attr("port", "443")
                .attr("protocol", "HTTPS")
                .attr("action", format!("forward to {stack}"))
                .attr("certificate", cert.as_str())
                .extra("load_balancer", stack)
                .extra("target_group", stack),
        );
    }
    out
}

/// The stack's load balancer and its listeners (by name, checked against the stack tag).
/// `tg_arn` is the stack's target group, which a forward names by the stack's name.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
    sg_names: &HashMap<String, String>,
    tg_arn: Option<&str>,
) -> Result<Vec<Resource>, AwsError> {
    let elb = aws.elb();
    let name = lb_name(stack);
    let lbs = match elb.describe_load_balancers().names(&name).send().await {
        Ok(lbs) => lbs,
        Err(e) => {
            let e = AwsError::from_sdk("elasticloadbalancing:DescribeLoadBalancers", e);
            if e.kind() != Some(crate::ErrorKind::NotFound) {
                return Err(e);
            }
            return Ok(Vec::new());
        }
    };
    let mut out = Vec::new();
    for lb in lbs.load_balancers() {
        let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
        if !lb_tags_ours(aws, &arn, stack).await? {
            continue;
        }
        let subnets = lb
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id())
            .map(str::to_string);
        let mut r = Resource::new(Kind::LoadBalancer, stack)
            .attr(
                "scheme",
                lb.scheme()
                    .map(LoadBalancerSchemeEnum::as_str)
                    .unwrap_or_default(),
            )
            .attr("subnets", Value::set(subnets))
            .attr(
                "security_groups",
                group_refs(sg_names, lb.security_groups()),
            )
            .extra("aws_name", name.as_str())
            .extra("dns_name", lb.dns_name().unwrap_or_default());
        r.id = Some(arn.clone());
        out.push(r);
        let ls = elb
            .describe_listeners()
            .load_balancer_arn(&arn)
            .send()
            .await
            .ctx("elasticloadbalancing:DescribeListeners")?;
        out.extend(ls.listeners().iter().map(|l| listener_of(l, stack, tg_arn)));
    }
    Ok(out)
}

/// One listener as a resource, its default action as the stack writes it.
fn listener_of(l: &Listener, stack: &str, tg_arn: Option<&str>) -> Resource {
    let port = l.port().unwrap_or_default();
    let protocol = l
        .protocol()
        .map(ProtocolEnum::as_str)
        .unwrap_or_default()
        .to_string();
    let action = match l.default_actions().first() {
        Some(a) if a.r#type() == Some(&ActionTypeEnum::Redirect) => "redirect to https".to_string(),
        Some(a) if a.r#type() == Some(&ActionTypeEnum::Forward) => {
            if a.target_group_arn().is_some() && a.target_group_arn() == tg_arn {
                format!("forward to {stack}")
            } else {
                format!("forward to {}", a.target_group_arn().unwrap_or("?"))
            }
        }
        Some(a) => a
            .r#type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    let mut r = Resource::new(
        Kind::Listener,
        format!("{}-{port}", protocol.to_ascii_lowercase()),
    )
    .attr("port", port.to_string())
    .attr("protocol", protocol.as_str())
    .attr("action", action)
    .extra("load_balancer", stack)
    .extra("target_group", stack);
    if protocol == "HTTPS" {
        r = r.attr(
            "certificate",
            l.certificates()
                .first()
                .and_then(|c| c.certificate_arn())
                .unwrap_or_default(),
        );
    }
    r.id = l.listener_arn().map(str::to_string);
    r
}

/// Runs one load balancer change.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let elb = step.aws.elb();
    if let Some(old) = super::going_id(ch) {
        elb.delete_load_balancer()
            .load_balancer_arn(old)
            .send()
            .await
            .ctx("elasticloadbalancing:DeleteLoadBalancer")?;
    }
    match ch.action {
        Action::Create | Action::Replace => create(step, r).await,
        Action::Update => update(step, ch).await,
        Action::Delete => {
            step.say(format!("deleted load balancer {}", r.name));
            Ok(())
        }
    }
}

/// Moves the load balancer to other subnets and sets its security groups, as changed: an ALB
/// takes both in place, so its listeners and DNS name stay.
async fn update(step: &Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let elb = step.aws.elb();
    let arn = step.id_of(r.kind, &r.name)?;
    let changed = |k: &str| ch.changed.iter().any(|c| c == k);
    if changed("subnets") {
        elb.set_subnets()
            .load_balancer_arn(&arn)
            .set_subnets(Some(r.list("subnets")))
            .send()
            .await
            .ctx("elasticloadbalancing:SetSubnets")?;
        step.say(format!("load balancer {}: subnets set", r.name));
    }
    if changed("security_groups") {
        elb.set_security_groups()
            .load_balancer_arn(&arn)
            .set_security_groups(Some(resolve_groups(r.list("security_groups"), &step.ids)?))
            .send()
            .await
            .ctx("elasticloadbalancing:SetSecurityGroups")?;
        step.say(format!("load balancer {}: security groups set", r.name));
    }
    Ok(())
}

async fn create(step: &mut Step<'_>, r: &Resource) -> Result<(), AwsError> {
    let out = step
        .aws
        .elb()
        .create_load_balancer()
        .name(r.input("aws_name"))
        .set_subnets(Some(r.list("subnets")))
        .set_security_groups(
            Some(resolve_groups(r.list("security_groups"), &step.ids)?).filter(|v| !v.is_empty()),
        )
        .scheme(LoadBalancerSchemeEnum::InternetFacing)
        .r#type(LoadBalancerTypeEnum::Application)
        .set_tags(Some(lb_tags(step.stack, &r.name)))
        .send()
        .await
        .ctx("elasticloadbalancing:CreateLoadBalancer")?;
    let lb = out.load_balancers().first();
    let arn = lb
        .and_then(|l| l.load_balancer_arn())
        .unwrap_or_default()
        .to_string();
    step.say(format!(
        "created load balancer {} ({})",
        r.input("aws_name"),
        lb.and_then(|l| l.dns_name()).unwrap_or_default()
    ));
    step.remember(r.kind, &r.name, arn);
    Ok(())
}

fn listener_actions(r: &Resource, ids: &Ids) -> Result<LbAction, AwsError> {
    if r.text("action") == "redirect to https" {
        return Ok(LbAction::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port("443")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build());
    }
    Ok(LbAction::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(crate::family::id_of(
            ids,
            Kind::TargetGroup,
            r.input("target_group"),
        )?)
        .build())
}

fn certificate(r: &Resource) -> Certificate {
    Certificate::builder()
        .certificate_arn(r.text("certificate"))
        .build()
}

/// Runs one listener change.
pub(crate) async fn apply_listener(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let elb = step.aws.elb();
    if let Some(old) = super::going_id(ch) {
        elb.delete_listener()
            .listener_arn(old)
            .send()
            .await
            .ctx("elasticloadbalancing:DeleteListener")?;
    }
    match ch.action {
        Action::Create | Action::Replace => create_listener(step, r).await,
        Action::Update => {
            let arn = step.id_of(r.kind, &r.name)?;
            let mut req = elb
                .modify_listener()
                .listener_arn(arn)
                .default_actions(listener_actions(r, &step.ids)?);
            if r.text("protocol") == "HTTPS" {
                req = req.certificates(certificate(r));
            }
            req.send()
                .await
                .ctx("elasticloadbalancing:ModifyListener")?;
            step.say(format!("listener {}: {}", r.name, r.text("action")));
            Ok(())
        }
        Action::Delete => {
            step.say(format!("deleted listener {}", r.name));
            Ok(())
        }
    }
}

async fn create_listener(step: &mut Step<'_>, r: &Resource) -> Result<(), AwsError> {
    let lb = step.id_of(Kind::LoadBalancer, r.input("load_balancer"))?;
    let https = r.text("protocol") == "HTTPS";
    let mut req = step
        .aws
        .elb()
        .create_listener()
        .load_balancer_arn(lb)
        .port(r.text("port").parse().unwrap_or(80))
        .protocol(if https {
            ProtocolEnum::Https
        } else {
            ProtocolEnum::Http
        })
        .default_actions(listener_actions(r, &step.ids)?)
        .set_tags(Some(lb_tags(step.stack, &r.name)));
    if https {
        req = req
            .certificates(certificate(r))
            .ssl_policy("ELBSecurityPolicy-TLS13-1-2-2021-06");
    }
    let out = req
        .send()
        .await
        .ctx("elasticloadbalancing:CreateListener")?;
    let arn = out
        .listeners()
        .first()
        .and_then(|l| l.listener_arn())
        .unwrap_or_default()
        .to_string();
    step.say(format!(
        "created listener {} ({})",
        r.name,
        r.text("action")
    ));
    step.remember(r.kind, &r.name, arn);
    Ok(())
}
