//! Security groups, for both targets (an EC2 stack's one group; an ECS stack's load balancer
//! and task groups): ingress rules as plan text and back, reading the stack's groups by tag,
//! and creating, updating (rule by rule) and deleting them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, UserIdGroupPair,
};

use crate::error::SdkResultExt;
use crate::family::{ec2_tags, id_of, stack_filter, tag_of, Ids, Lifecycle, Step};
use crate::plan::Change;
use crate::resource::{Kind, Resource, Value};
use crate::{Aws, AwsError, TAG_RESOURCE};

/// Ingress rules as plan text: `tcp/80 from 0.0.0.0/0`. SSH only when the stack names who may
/// reach it: the plan depends on the stack file and AWS alone, never on who runs it.
pub fn ingress_rules(ssh_cidr: Option<&str>) -> Vec<String> {
    let mut rules = vec![
        "tcp/80 from 0.0.0.0/0".to_string(),
        "tcp/443 from 0.0.0.0/0".to_string(),
    ];
    if let Some(c) = ssh_cidr {
        rules.push(format!("tcp/22 from {c}"));
    }
    rules
}

/// An EC2 stack's group: web from anywhere, SSH from `ssh_cidr` only.
pub(crate) fn desired(stack: &str, vpc: &str, ssh_cidr: Option<&str>) -> Resource {
    Resource::new(Kind::SecurityGroup, stack)
        .attr("vpc", vpc)
        .attr("ingress", Value::set(ingress_rules(ssh_cidr)))
        .extra("group_name", format!("fullslack-{stack}"))
}

/// One ingress rule as read from AWS or written in a plan: `PROTO/PORTS from SOURCE`, where
/// PORTS is `N`, `N-M` or `all` and SOURCE an IPv4/IPv6 CIDR, a security group (`sg-…`, or
/// `ACCOUNT/sg-…` for another account's) or a prefix list (`pl-…`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    proto: String,
    ports: Option<(i32, i32)>,
    source: String,
}

fn parse_rule(rule: &str) -> Option<Rule> {
    let (proto_ports, source) = rule.split_once(" from ")?;
    let (proto, ports) = proto_ports.split_once('/')?;
    let ports = if ports == "all" {
        None
    } else if let Ok(p) = ports.parse::<i32>() {
        Some((p, p))
    } else {
        // `N-M`; N may itself be negative (ICMP's -1).
        let cut = ports[1..].find('-')? + 1;
        Some((ports[..cut].parse().ok()?, ports[cut + 1..].parse().ok()?))
    };
    Some(Rule {
        proto: proto.to_string(),
        ports,
        source: source.to_string(),
    })
}

fn rule_text(proto: &str, from: Option<i32>, to: Option<i32>, source: &str) -> String {
    let ports = match (from, to) {
        _ if proto == "-1" => "all".to_string(),
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "all".into(),
    };
    format!("{proto}/{ports} from {source}")
}

/// The IpPermission that authorizes or revokes exactly this rule, for every source kind (a
/// CIDR, an IPv6 CIDR, another security group, a prefix list) and for all-traffic `-1`
/// rules, which carry no ports.
fn permission(rule: &str, describe: bool, ids: &Ids) -> Result<IpPermission, AwsError> {
    let r = parse_rule(rule).ok_or_else(|| {
        AwsError::invalid(
            format!("cannot read ingress rule `{rule}`"),
            "report this bug with the plan file",
        )
    })?;
    let mut b = IpPermission::builder().ip_protocol(&r.proto);
    if let (Some((from, to)), false) = (r.ports, r.proto == "-1") {
        b = b.from_port(from).to_port(to);
    }
    let own;
    let mut src = r.source.as_str();
    if let Some(name) = src.strip_prefix("group:") {
        own = id_of(ids, Kind::SecurityGroup, name)?;
        src = own.as_str();
    }
    let group = match src.split_once('/') {
        Some((account, g)) if g.starts_with("sg-") => Some((Some(account), g)),
        _ if src.starts_with("sg-") => Some((None, src)),
        _ => None,
    };
    b = if let Some((account, g)) = group {
        let pair = UserIdGroupPair::builder()
            .group_id(g)
            .set_user_id(account.map(str::to_string));
        b.user_id_group_pairs(pair.build())
    } else if src.starts_with("pl-") {
        b.prefix_list_ids(PrefixListId::builder().prefix_list_id(src).build())
    } else if src.contains(':') {
        b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(src).build())
    } else {
        // A description on a revoke would have to match the rule's own: only on authorize.
        let range = IpRange::builder().cidr_ip(src);
        let range = if describe {
            range.description("fullslack")
        } else {
            range
        };
        b.ip_ranges(range.build())
    };
    Ok(b.build())
}

/// Group references as AWS takes them: `group:<name>` (one of the stack's) → its id.
pub(crate) fn resolve_groups(groups: Vec<String>, ids: &Ids) -> Result<Vec<String>, AwsError> {
    groups
        .into_iter()
        .map(|g| match g.strip_prefix("group:") {
            Some(name) => id_of(ids, Kind::SecurityGroup, name),
            None => Ok(g),
        })
        .collect()
}

/// Group ids as the stack names them: its own groups `group:<name>`, others by id.
pub(crate) fn group_refs(sg_names: &HashMap<String, String>, ids: &[String]) -> Value {
    Value::set(ids.iter().map(|g| match sg_names.get(g) {
        Some(n) => format!("group:{n}"),
        None => g.clone(),
    }))
}

/// The stack's security groups (by tag), and their ids → logical names. A rule whose source
/// is another of the stack's groups reads `group:<name>`, as the stack writes it.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
) -> Result<(Vec<Resource>, HashMap<String, String>), AwsError> {
    let sgs = aws
        .ec2()
        .describe_security_groups()
        .filters(stack_filter(stack))
        .send()
        .await
        .ctx("ec2:DescribeSecurityGroups")?;
    let sg_names: HashMap<String, String> = sgs
        .security_groups()
        .iter()
        .map(|g| {
            (
                g.group_id().unwrap_or_default().to_string(),
                tag_of(g.tags(), TAG_RESOURCE).unwrap_or(stack).to_string(),
            )
        })
        .collect();
    let mut out = Vec::new();
    for g in sgs.security_groups() {
        let id = g.group_id().unwrap_or_default().to_string();
        let name = sg_names.get(&id).cloned().unwrap_or_default();
        let mut r = Resource::new(Kind::SecurityGroup, name)
            .attr("vpc", g.vpc_id().unwrap_or_default())
            .attr("ingress", Value::set(rules_of(g, &sg_names)))
            .extra("group_name", g.group_name().unwrap_or_default());
        r.id = Some(id);
        out.push(r);
    }
    Ok((out, sg_names))
}

/// A group's ingress rules as plan text, every source kind included.
fn rules_of(
    g: &aws_sdk_ec2::types::SecurityGroup,
    sg_names: &HashMap<String, String>,
) -> Vec<String> {
    let mut rules = Vec::new();
    for p in g.ip_permissions() {
        let proto = p.ip_protocol().unwrap_or("-1");
        let text = |src: &str| rule_text(proto, p.from_port(), p.to_port(), src);
        for r in p.ip_ranges() {
            rules.push(text(r.cidr_ip().unwrap_or("?")));
        }
        for r in p.ipv6_ranges() {
            rules.push(text(r.cidr_ipv6().unwrap_or("?")));
        }
        for r in p.user_id_group_pairs() {
            let group = r.group_id().unwrap_or("?");
            // One of the stack's own groups by its logical name; another account's group
            // with its account.
            match (sg_names.get(group), r.user_id()) {
                (Some(n), _) => rules.push(text(&format!("group:{n}"))),
                (None, Some(acct)) if g.owner_id().is_some_and(|o| o != acct) => {
                    rules.push(text(&format!("{acct}/{group}")));
                }
                _ => rules.push(text(group)),
            }
        }
        for r in p.prefix_list_ids() {
            rules.push(text(r.prefix_list_id().unwrap_or("?")));
        }
    }
    rules
}

/// Security groups: made with all their rules (a replaced one is retired at the end), their
/// rules changed in place, deleted.
pub(crate) struct SecurityGroups;

impl Lifecycle for SecurityGroups {
    async fn create(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        create(step, ch).await
    }

    async fn update(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        update(step, ch).await
    }

    async fn delete(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        let r = ch.resource();
        let id = r.id.clone().unwrap_or_default();
        delete_group(step.aws, &id, step.timeout).await?;
        step.say(format!("deleted security group {} ({id})", r.name));
        Ok(())
    }
}

/// A new group with all its rules; a replaced one is retired at the end of the apply.
async fn create(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let ec2 = step.aws.ec2();
    let stack = step.stack;
    let out = ec2
        .create_security_group()
        .group_name(r.input("group_name"))
        .description(match r.input("description") {
            "" => format!("fullslack stack {stack}: web from anywhere, ssh from the operator"),
            d => d.to_string(),
        })
        .vpc_id(r.text("vpc"))
        .tag_specifications(ec2_tags(stack, &r.name, ResourceType::SecurityGroup, &[]))
        .send()
        .await
        .ctx("ec2:CreateSecurityGroup")?;
    let id = out.group_id().unwrap_or_default().to_string();
    for rule in r.list("ingress") {
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(permission(&rule, true, &step.ids)?)
            .send()
            .await
            .ctx("ec2:AuthorizeSecurityGroupIngress")?;
    }
    step.say(format!("created security group {} ({id})", r.name));
    step.remember(r.kind, &r.name, id);
    if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
        step.retire.push((r.kind, r.name.clone(), old));
    }
    Ok(())
}

/// Revokes the rules the stack does not have, authorizes the ones it lacks.
async fn update(step: &Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let ec2 = step.aws.ec2();
    let id = step.id_of(r.kind, &r.name)?;
    let before = ch
        .before
        .as_ref()
        .map(|b| b.list("ingress"))
        .unwrap_or_default();
    let after = r.list("ingress");
    // Every rule kind read back (CIDR, IPv6, another group, prefix list, all traffic)
    // is revoked with its own shape, so drift can always be repaired.
    for rule in before.iter().filter(|x| !after.contains(x)) {
        ec2.revoke_security_group_ingress()
            .group_id(&id)
            .ip_permissions(permission(rule, false, &step.ids)?)
            .send()
            .await
            .ctx("ec2:RevokeSecurityGroupIngress")?;
        step.say(format!("security group {}: removed `{rule}`", r.name));
    }
    for rule in after.iter().filter(|x| !before.contains(x)) {
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(permission(rule, true, &step.ids)?)
            .send()
            .await
            .ctx("ec2:AuthorizeSecurityGroupIngress")?;
        step.say(format!("security group {}: added `{rule}`", r.name));
    }
    Ok(())
}

/// Deletes a security group, waiting while instances just terminated still hold it.
pub(crate) async fn delete_group(aws: &Aws, id: &str, timeout: Duration) -> Result<(), AwsError> {
    let start = Instant::now();
    loop {
        match aws
            .ec2()
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .ctx("ec2:DeleteSecurityGroup")
        {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some("DependencyViolation") && start.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip() {
        let r = parse_rule("tcp/22 from 1.2.3.4/32").unwrap();
        assert_eq!((r.proto.as_str(), r.ports), ("tcp", Some((22, 22))));
        let r = parse_rule("tcp/1000-2000 from 0.0.0.0/0").unwrap();
        assert_eq!(r.ports, Some((1000, 2000)));
        let r = parse_rule("icmp/-1 from 10.0.0.0/8").unwrap();
        assert_eq!(r.ports, Some((-1, -1)));
        assert_eq!(parse_rule("-1/all from sg-123").unwrap().ports, None);
        // Each source kind gets its own IpPermission shape.
        let p = permission("-1/all from 0.0.0.0/0", false, &Ids::new()).unwrap();
        assert_eq!((p.ip_protocol(), p.from_port()), (Some("-1"), None));
        let p = permission("tcp/5432 from sg-0abc", false, &Ids::new()).unwrap();
        assert_eq!(p.user_id_group_pairs()[0].group_id(), Some("sg-0abc"));
        assert!(p.ip_ranges().is_empty());
        let p = permission("tcp/5432 from 111122223333/sg-0abc", false, &Ids::new()).unwrap();
        assert_eq!(p.user_id_group_pairs()[0].user_id(), Some("111122223333"));
        let p = permission("tcp/443 from ::/0", false, &Ids::new()).unwrap();
        assert_eq!(p.ipv6_ranges()[0].cidr_ipv6(), Some("::/0"));
        let p = permission("tcp/443 from pl-12ab", false, &Ids::new()).unwrap();
        assert_eq!(p.prefix_list_ids()[0].prefix_list_id(), Some("pl-12ab"));
        assert_eq!(rule_text("-1", None, None, "sg-1"), "-1/all from sg-1");
        let ids = Ids::from([(
            (Kind::SecurityGroup, "s-alb".to_string()),
            "sg-9".to_string(),
        )]);
        let p = permission("tcp/8080 from group:s-alb", false, &ids).unwrap();
        assert_eq!(p.user_id_group_pairs()[0].group_id(), Some("sg-9"));
        assert_eq!(
            rule_text("-1", Some(-1), Some(-1), "sg-1"),
            "-1/all from sg-1"
        );
    }
}
