//! EC2 stacks: a security group (80/443 from anywhere, 22 from the operator only), an imported
//! key pair, instances from a current image with user data that installs Docker and Nginx,
//! and one Elastic IP per instance. Everything carries the stack's tags; what exists is read
//! back by those tags, never from a local state file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, DomainType, EbsBlockDevice, Filter, HttpTokensState,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, Tag, TagSpecification,
    UserIdGroupPair, VolumeType,
};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::SdkResultExt;
use crate::plan::{Action, Change, Kind, Resource, Value};
use crate::spec::{Ec2Spec, StackSpec};
use crate::{Aws, AwsError, TAG_RESOURCE, TAG_STACK};

/// Amazon's owner id of Amazon Linux images.
const AMAZON_LINUX_OWNER: &str = "137112412989";
/// Debian's owner id of its official cloud images.
const DEBIAN_OWNER: &str = "136693071363";

/// Runs on first boot (cloud-init): Docker Engine and Nginx, enabled so they start on every
/// boot. Works on Amazon Linux 2023 (dnf) and Debian (apt). No secrets in here: user data is
/// readable by anyone who can describe the instance.
pub const USER_DATA: &str = r#"#!/bin/bash
# fullslack: Docker Engine and Nginx, started now and on every boot.
set -euxo pipefail
if command -v dnf >/dev/null 2>&1; then
  dnf install -y docker nginx
else
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y docker.io nginx
fi
systemctl enable --now docker
systemctl enable --now nginx
for u in ec2-user admin; do id "$u" >/dev/null 2>&1 && usermod -aG docker "$u"; done
mkdir -p /var/lib/fullslack/locks /etc/fullslack
"#;

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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

fn tags(stack: &str, name: &str, rt: ResourceType, more: &[(&str, &str)]) -> TagSpecification {
    let mut b = TagSpecification::builder()
        .resource_type(rt)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key(TAG_STACK).value(stack).build())
        .tags(Tag::builder().key(TAG_RESOURCE).value(name).build());
    for (k, v) in more {
        b = b.tags(Tag::builder().key(*k).value(*v).build());
    }
    b.build()
}

pub(crate) fn tag_of<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

pub(crate) fn stack_filter(stack: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{TAG_STACK}"))
        .values(stack)
        .build()
}

/// Graviton instance families end their family name in `g` (t4g, m7g, c7gn…).
pub(crate) fn is_arm(instance_type: &str) -> bool {
    instance_type
        .split('.')
        .next()
        .is_some_and(|f| f.trim_end_matches(['n', 'd', 'e']).ends_with('g'))
}

/// Resolves `al2023` / `debian` to the newest matching image; an `ami-…` id is checked.
/// Returns (image id, root device name).
async fn resolve_image(
    aws: &Aws,
    alias: &str,
    instance_type: &str,
) -> Result<(String, String), AwsError> {
    let arch = if is_arm(instance_type) {
        "arm64"
    } else {
        "x86_64"
    };
    let req = aws.ec2().describe_images();
    let req = match alias {
        "al2023" => req.owners(AMAZON_LINUX_OWNER).filters(
            Filter::builder()
                .name("name")
                .values(format!("al2023-ami-2023.*-{arch}"))
                .build(),
        ),
        "debian" | "debian-12" => req.owners(DEBIAN_OWNER).filters(
            Filter::builder()
                .name("name")
                .values(format!(
                    "debian-12-{}-*",
                    if arch == "arm64" { "arm64" } else { "amd64" }
                ))
                .build(),
        ),
        id if id.starts_with("ami-") => req.image_ids(id),
        other => {
            return Err(AwsError::invalid(
                format!("unknown image `{other}`"),
                "set ec2.ami to `al2023`, `debian` or an `ami-…` id",
            ))
        }
    };
    let out = req
        .filters(Filter::builder().name("state").values("available").build())
        .send()
        .await
        .ctx("ec2:DescribeImages")?;
    let best = out
        .images()
        .iter()
        .filter(|i| {
            i.architecture()
                .map(aws_sdk_ec2::types::ArchitectureValues::as_str)
                == Some(arch)
                || alias.starts_with("ami-")
        })
        .max_by(|a, b| (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name())))
        .ok_or_else(|| {
            AwsError::invalid(
                format!("no available `{alias}` image for {arch} in {}", aws.region),
                "check ec2.ami and the region, or pin an `ami-…` id that exists there",
            )
        })?;
    Ok((
        best.image_id().unwrap_or_default().to_string(),
        best.root_device_name().unwrap_or("/dev/xvda").to_string(),
    ))
}

async fn vpc_of(aws: &Aws, subnet: Option<&str>) -> Result<String, AwsError> {
    if let Some(subnet) = subnet {
        return vpc_of_subnet(aws, subnet, "check ec2.subnet_id and the region").await;
    }
    let out = aws
        .ec2()
        .describe_vpcs()
        .filters(Filter::builder().name("isDefault").values("true").build())
        .send()
        .await
        .ctx("ec2:DescribeVpcs")?;
    out.vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::invalid(
                format!("the account has no default VPC in {}", aws.region),
                "set ec2.subnet_id to a public subnet of the VPC to use",
            )
        })
}

/// The VPC a subnet belongs to; `hint` names the stack setting the subnet came from.
pub(crate) async fn vpc_of_subnet(
    aws: &Aws,
    subnet: &str,
    hint: &'static str,
) -> Result<String, AwsError> {
    let out = aws
        .ec2()
        .describe_subnets()
        .subnet_ids(subnet)
        .send()
        .await
        .ctx("ec2:DescribeSubnets")?;
    out.subnets()
        .first()
        .and_then(|s| s.vpc_id())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::invalid(format!("subnet {subnet} not found in {}", aws.region), hint)
        })
}

/// The resources an EC2 stack wants.
pub(crate) async fn desired(
    aws: &Aws,
    spec: &StackSpec,
    e: &Ec2Spec,
) -> Result<Vec<Resource>, AwsError> {
    let stack = &spec.name;
    let vpc = vpc_of(aws, e.subnet_id.as_deref()).await?;
    let (ami_id, root_device) = resolve_image(aws, &e.ami, &e.instance_type).await?;
    let mut out = Vec::new();
    out.push(
        Resource::new(Kind::SecurityGroup, stack.as_str())
            .attr("vpc", vpc.as_str())
            .attr("ingress", Value::set(ingress_rules(e.ssh_cidr.as_deref())))
            .extra("group_name", format!("fullslack-{stack}")),
    );
    match (&e.key_name, &e.public_key) {
        (Some(key), Some(public)) => {
            // A key pair of that name that is not the stack's (another stack's, or made by
            // hand) would make the import fail half-way through apply: refuse now.
            let found = aws
                .ec2()
                .describe_key_pairs()
                .filters(Filter::builder().name("key-name").values(key).build())
                .send()
                .await
                .ctx("ec2:DescribeKeyPairs")?;
            if let Some(k) = found
                .key_pairs()
                .iter()
                // Filtered here too: not every EC2 implementation filters key pairs.
                .find(|k| {
                    k.key_name() == Some(key.as_str())
                        && tag_of(k.tags(), TAG_STACK) != Some(stack.as_str())
                })
            {
                let owner = match tag_of(k.tags(), TAG_STACK) {
                    Some(other) => format!("belongs to stack `{other}`"),
                    None => "was not made by this stack".to_string(),
                };
                return Err(AwsError::invalid(
                    format!("key pair `{key}` already exists in {} and {owner}", aws.region),
                    format!("remove ec2.key_name to use the stack's own key pair (`fullslack-{stack}`), choose another ec2.key_name, or drop ec2.public_key_file to use the existing key pair as it is"),
                ));
            }
            out.push(
                Resource::new(Kind::KeyPair, key.as_str())
                    .attr("public_key_sha256", sha256_hex(public.trim().as_bytes()))
                    .extra("public_key", public.trim()),
            );
        }
        (Some(key), None) => {
            // Not ours to manage: it must exist already.
            let found = aws
                .ec2()
                .describe_key_pairs()
                .filters(Filter::builder().name("key-name").values(key).build())
                .send()
                .await
                .ctx("ec2:DescribeKeyPairs")?;
            if found.key_pairs().is_empty() {
                return Err(AwsError::invalid(
                    format!("key pair `{key}` does not exist in {}", aws.region),
                    "set ec2.public_key_file to an OpenSSH public key to import it, or create the key pair in EC2",
                ));
            }
        }
        (None, _) => {}
    }
    let user_data_sha = sha256_hex(USER_DATA.as_bytes());
    for i in 1..=e.count {
        let name = format!("{stack}-{i}");
        let mut inst = Resource::new(Kind::Instance, name.as_str())
            .attr("instance_type", e.instance_type.as_str())
            .attr("image", e.ami.as_str())
            .attr("key_name", e.key_name.clone().unwrap_or_default())
            .attr("security_group", Value::set([stack.as_str()]))
            .attr("user_data_sha256", user_data_sha.as_str())
            .attr("volume_gb", e.volume_gb.to_string())
            // IMDSv2 only: a token is required, so an SSRF in anything on the instance
            // cannot read the role's credentials with a plain GET.
            .attr("metadata_tokens", "required")
            .extra("ami_id", ami_id.as_str())
            .extra("root_device", root_device.as_str());
        if let Some(s) = &e.subnet_id {
            inst = inst.attr("subnet", s.as_str());
        }
        out.push(inst);
        out.push(Resource::new(Kind::ElasticIp, name.as_str()).attr("instance", name.as_str()));
    }
    Ok(out)
}

/// What exists for the stack (by tags).
/// The stack's security groups (by tag), and their ids → logical names. A rule whose source
/// is another of the stack's groups reads `group:<name>`, as the stack writes it.
pub(crate) async fn actual_groups(
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
        let mut r = Resource::new(Kind::SecurityGroup, name)
            .attr("vpc", g.vpc_id().unwrap_or_default())
            .attr("ingress", Value::set(rules))
            .extra("group_name", g.group_name().unwrap_or_default());
        r.id = Some(id);
        out.push(r);
    }
    Ok((out, sg_names))
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

/// What exists for the stack (by tags).
pub(crate) async fn actual(aws: &Aws, stack: &str) -> Result<Vec<Resource>, AwsError> {
    let ec2 = aws.ec2();
    let (mut out, sg_names) = actual_groups(aws, stack).await?;

    // Key pairs: few per account; filter by tag here (not every EC2 implementation filters
    // key pairs by tag server-side).
    let keys = ec2
        .describe_key_pairs()
        .send()
        .await
        .ctx("ec2:DescribeKeyPairs")?;
    for k in keys.key_pairs() {
        if tag_of(k.tags(), TAG_STACK) != Some(stack) {
            continue;
        }
        let name = k.key_name().unwrap_or_default();
        let mut r = Resource::new(Kind::KeyPair, name).attr(
            "public_key_sha256",
            tag_of(k.tags(), "fullslack:public-key-sha256").unwrap_or_default(),
        );
        r.id = k.key_pair_id().map(str::to_string);
        out.push(r);
    }

    let mut inst_names: HashMap<String, String> = HashMap::new();
    let mut pages = ec2
        .describe_instances()
        .filters(stack_filter(stack))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .into_paginator()
        .send();
    let mut instances = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.ctx("ec2:DescribeInstances")?;
        for res in page.reservations() {
            instances.extend(res.instances().iter().cloned());
        }
    }
    // Root volumes (size), one call for all instances.
    let root_volumes: Vec<String> = instances
        .iter()
        .filter_map(|i| {
            let root = i.root_device_name()?;
            i.block_device_mappings()
                .iter()
                .find(|m| m.device_name() == Some(root))
                .and_then(|m| m.ebs())
                .and_then(|e| e.volume_id())
                .map(str::to_string)
        })
        .collect();
    let mut volume_gb: HashMap<String, String> = HashMap::new();
    if !root_volumes.is_empty() {
        let vols = ec2
            .describe_volumes()
            .set_volume_ids(Some(root_volumes))
            .send()
            .await
            .ctx("ec2:DescribeVolumes")?;
        for v in vols.volumes() {
            if let (Some(id), Some(size)) = (v.volume_id(), v.size()) {
                volume_gb.insert(id.to_string(), size.to_string());
            }
        }
    }
    for i in &instances {
        let id = i.instance_id().unwrap_or_default().to_string();
        let name = tag_of(i.tags(), TAG_RESOURCE).unwrap_or(&id).to_string();
        inst_names.insert(id.clone(), name.clone());
        let sg = Value::set(
            i.security_groups()
                .iter()
                .filter_map(|g| g.group_id())
                .map(|g| sg_names.get(g).cloned().unwrap_or_else(|| g.to_string())),
        );
        let root_volume = i
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name().is_some() && m.device_name() == i.root_device_name())
            .and_then(|m| m.ebs())
            .and_then(|e| e.volume_id())
            .unwrap_or_default()
            .to_string();
        let mut r = Resource::new(Kind::Instance, name)
            .attr(
                "instance_type",
                i.instance_type()
                    .map(InstanceType::as_str)
                    .unwrap_or_default(),
            )
            .attr(
                "image",
                tag_of(i.tags(), "fullslack:image").unwrap_or_default(),
            )
            .attr("key_name", i.key_name().unwrap_or_default())
            .attr("security_group", sg)
            .attr(
                "user_data_sha256",
                tag_of(i.tags(), "fullslack:user-data-sha256").unwrap_or_default(),
            )
            .attr("subnet", i.subnet_id().unwrap_or_default())
            .extra("ami_id", i.image_id().unwrap_or_default())
            .extra("root_volume", root_volume.as_str())
            .extra(
                "state",
                i.state()
                    .and_then(|s| s.name())
                    .map(InstanceStateName::as_str)
                    .unwrap_or_default(),
            )
            .extra("public_ip", i.public_ip_address().unwrap_or_default());
        // Not every EC2 implementation reports these; what is not reported is not compared.
        if let Some(gb) = volume_gb.get(&root_volume) {
            r = r.attr("volume_gb", gb.as_str());
        }
        if let Some(t) = i.metadata_options().and_then(|m| m.http_tokens()) {
            r = r.attr("metadata_tokens", t.as_str());
        }
        r.id = Some(id);
        out.push(r);
    }

    let addrs = ec2
        .describe_addresses()
        .filters(stack_filter(stack))
        .send()
        .await
        .ctx("ec2:DescribeAddresses")?;
    for a in addrs.addresses() {
        let id = a.allocation_id().unwrap_or_default().to_string();
        let name = tag_of(a.tags(), TAG_RESOURCE).unwrap_or(&id).to_string();
        let instance = a
            .instance_id()
            .map(|i| inst_names.get(i).cloned().unwrap_or_else(|| i.to_string()))
            .unwrap_or_default();
        let mut r = Resource::new(Kind::ElasticIp, name)
            .attr("instance", instance)
            .extra("public_ip", a.public_ip().unwrap_or_default())
            .extra("association_id", a.association_id().unwrap_or_default());
        r.id = Some(id);
        out.push(r);
    }
    Ok(out)
}

/// An Elastic IP must follow its instance when that instance is created or replaced, even if
/// the address itself is unchanged: add that step to the plan.
pub(crate) fn link_addresses(
    changes: &mut Vec<Change>,
    unchanged: &mut Vec<crate::plan::Unchanged>,
    actual: &[Resource],
    desired: &[Resource],
) {
    let moved: Vec<String> = changes
        .iter()
        .filter(|c| {
            c.resource().kind == Kind::Instance
                && matches!(c.action, Action::Create | Action::Replace)
        })
        .map(|c| c.resource().name.clone())
        .collect();
    for inst in moved {
        let Some(pos) = unchanged.iter().position(|u| {
            u.kind == Kind::ElasticIp
                && desired.iter().any(|d| {
                    d.kind == Kind::ElasticIp && d.name == u.name && d.text("instance") == inst
                })
        }) else {
            continue;
        };
        let u = unchanged.remove(pos);
        let before = actual
            .iter()
            .find(|a| a.kind == Kind::ElasticIp && a.name == u.name)
            .cloned();
        let mut after = desired
            .iter()
            .find(|d| d.kind == Kind::ElasticIp && d.name == u.name)
            .cloned();
        if let Some(a) = after.as_mut() {
            a.id = u.id.clone();
        }
        changes.push(Change {
            action: Action::Update,
            before,
            after,
            changed: vec!["instance".into()],
            forces: Default::default(),
        });
    }
    crate::plan::order(changes);
}

/// Ids of resources known while applying: logical name → AWS id.
pub(crate) type Ids = HashMap<(Kind, String), String>;

/// What replacements left behind: (kind, logical name, old id). Removed after every other
/// step, so an Elastic IP has already moved to the new instance and instances already use a
/// new security group when the old ones go.
pub(crate) type Retire = Vec<(Kind, String, String)>;

/// The logical name of an instance's security group (a one-member set).
fn sg_name(r: &Resource) -> String {
    r.list("security_group")
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Removes what replacements left behind: instances first, then security groups.
pub(crate) async fn retire_all(
    aws: &Aws,
    retire: &Retire,
    timeout: Duration,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), AwsError> {
    for (kind, name, id) in retire.iter().filter(|r| r.0 == Kind::Instance) {
        terminate(aws, id, timeout).await?;
        say(format!(
            "terminated the replaced {} {name} ({id})",
            kind.as_str()
        ));
    }
    for (_, name, id) in retire.iter().filter(|r| r.0 == Kind::SecurityGroup) {
        delete_group(aws, id, timeout).await?;
        say(format!("deleted the replaced security group {name} ({id})"));
    }
    Ok(())
}

/// Deletes a security group, waiting while instances just terminated still hold it.
async fn delete_group(aws: &Aws, id: &str, timeout: Duration) -> Result<(), AwsError> {
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

fn id_of(ids: &Ids, kind: Kind, name: &str) -> Result<String, AwsError> {
    ids.get(&(kind, name.to_string())).cloned().ok_or_else(|| {
        AwsError::invalid(
            format!("{} {name} is needed but does not exist", kind.as_str()),
            "run `fullslack plan` again: the plan is missing a step",
        )
    })
}

/// Runs one EC2 change.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply(
    aws: &Aws,
    stack: &str,
    ids: &mut Ids,
    retire: &mut Retire,
    ch: &Change,
    timeout: Duration,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), AwsError> {
    let ec2 = aws.ec2();
    let r = ch.resource();
    match (r.kind, ch.action) {
        (Kind::SecurityGroup, Action::Create | Action::Replace) => {
            let out = ec2
                .create_security_group()
                .group_name(r.input("group_name"))
                .description(match r.input("description") {
                    "" => {
                        format!("fullslack stack {stack}: web from anywhere, ssh from the operator")
                    }
                    d => d.to_string(),
                })
                .vpc_id(r.text("vpc"))
                .tag_specifications(tags(stack, &r.name, ResourceType::SecurityGroup, &[]))
                .send()
                .await
                .ctx("ec2:CreateSecurityGroup")?;
            let id = out.group_id().unwrap_or_default().to_string();
            for rule in r.list("ingress") {
                ec2.authorize_security_group_ingress()
                    .group_id(&id)
                    .ip_permissions(permission(&rule, true, ids)?)
                    .send()
                    .await
                    .ctx("ec2:AuthorizeSecurityGroupIngress")?;
            }
            say(format!("created security group {} ({id})", r.name));
            ids.insert((r.kind, r.name.clone()), id);
            if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
                retire.push((r.kind, r.name.clone(), old));
            }
        }
        (Kind::SecurityGroup, Action::Update) => {
            let id = id_of(ids, r.kind, &r.name)?;
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
                    .ip_permissions(permission(rule, false, ids)?)
                    .send()
                    .await
                    .ctx("ec2:RevokeSecurityGroupIngress")?;
                say(format!("security group {}: removed `{rule}`", r.name));
            }
            for rule in after.iter().filter(|x| !before.contains(x)) {
                ec2.authorize_security_group_ingress()
                    .group_id(&id)
                    .ip_permissions(permission(rule, true, ids)?)
                    .send()
                    .await
                    .ctx("ec2:AuthorizeSecurityGroupIngress")?;
                say(format!("security group {}: added `{rule}`", r.name));
            }
        }
        (Kind::SecurityGroup, Action::Delete) => {
            let id = r.id.clone().unwrap_or_default();
            delete_group(aws, &id, timeout).await?;
            say(format!("deleted security group {} ({id})", r.name));
        }
        (Kind::KeyPair, Action::Create | Action::Replace) => {
            if ch.action == Action::Replace {
                ec2.delete_key_pair()
                    .key_name(&r.name)
                    .send()
                    .await
                    .ctx("ec2:DeleteKeyPair")?;
            }
            let sha = r.text("public_key_sha256").to_string();
            let out = ec2
                .import_key_pair()
                .key_name(&r.name)
                .public_key_material(aws_sdk_ec2::primitives::Blob::new(
                    r.input("public_key").as_bytes(),
                ))
                .tag_specifications(tags(
                    stack,
                    &r.name,
                    ResourceType::KeyPair,
                    &[("fullslack:public-key-sha256", &sha)],
                ))
                .send()
                .await
                .ctx("ec2:ImportKeyPair")?;
            say(format!("imported key pair {}", r.name));
            ids.insert(
                (r.kind, r.name.clone()),
                out.key_pair_id().unwrap_or_default().to_string(),
            );
        }
        (Kind::KeyPair, Action::Delete) => {
            ec2.delete_key_pair()
                .key_name(&r.name)
                .send()
                .await
                .ctx("ec2:DeleteKeyPair")?;
            say(format!("deleted key pair {}", r.name));
        }
        (Kind::Instance, Action::Create | Action::Replace) => {
            let sg = id_of(ids, Kind::SecurityGroup, &sg_name(r))?;
            let volume: i32 = r.text("volume_gb").parse().unwrap_or(20);
            let user_data = base64::engine::general_purpose::STANDARD.encode(USER_DATA);
            let more = [
                ("fullslack:image", r.text("image")),
                ("fullslack:user-data-sha256", r.text("user_data_sha256")),
            ];
            let mut req = ec2
                .run_instances()
                .image_id(r.input("ami_id"))
                .instance_type(InstanceType::from(r.text("instance_type")))
                .min_count(1)
                .max_count(1)
                .security_group_ids(sg)
                .user_data(user_data)
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_tokens(HttpTokensState::Required)
                        .http_endpoint(InstanceMetadataEndpointState::Enabled)
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name(r.input("root_device"))
                        .ebs(
                            EbsBlockDevice::builder()
                                .volume_size(volume)
                                .volume_type(VolumeType::Gp3)
                                .encrypted(true)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(tags(stack, &r.name, ResourceType::Instance, &more))
                .tag_specifications(tags(stack, &r.name, ResourceType::Volume, &[]));
            if !r.text("key_name").is_empty() {
                req = req.key_name(r.text("key_name"));
            }
            if !r.text("subnet").is_empty() {
                req = req.subnet_id(r.text("subnet"));
            }
            let out = req.send().await.ctx("ec2:RunInstances")?;
            let id = out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .unwrap_or_default()
                .to_string();
            say(format!(
                "launched instance {} ({id}), waiting until it runs",
                r.name
            ));
            wait_instance(aws, &id, InstanceStateName::Running, timeout).await?;
            say(format!("instance {} ({id}) is running", r.name));
            ids.insert((r.kind, r.name.clone()), id);
            // The old one is terminated last, after its Elastic IP has moved to the new one.
            if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
                retire.push((r.kind, r.name.clone(), old));
            }
        }
        (Kind::Instance, Action::Update) => {
            let id = id_of(ids, r.kind, &r.name)?;
            let changed = |k: &str| ch.changed.iter().any(|c| c == k);
            if changed("security_group") {
                ec2.modify_instance_attribute()
                    .instance_id(&id)
                    .groups(id_of(ids, Kind::SecurityGroup, &sg_name(r))?)
                    .send()
                    .await
                    .ctx("ec2:ModifyInstanceAttribute")?;
                say(format!(
                    "instance {}: security groups set to {}",
                    r.name,
                    sg_name(r)
                ));
            }
            if changed("metadata_tokens") {
                ec2.modify_instance_metadata_options()
                    .instance_id(&id)
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .send()
                    .await
                    .ctx("ec2:ModifyInstanceMetadataOptions")?;
                say(format!("instance {}: IMDSv2 required", r.name));
            }
            if changed("volume_gb") {
                let volume = ch
                    .before
                    .as_ref()
                    .map(|b| b.input("root_volume").to_string())
                    .unwrap_or_default();
                let gb: i32 = r.text("volume_gb").parse().unwrap_or(20);
                ec2.modify_volume()
                    .volume_id(&volume)
                    .size(gb)
                    .send()
                    .await
                    .ctx("ec2:ModifyVolume")?;
                say(format!(
                    "instance {}: root volume {volume} grown to {gb} GiB (grow the file system on the host: the default images do at boot)",
                    r.name
                ));
            }
            if changed("instance_type") {
                let t = r.text("instance_type");
                say(format!(
                    "instance {} ({id}): stopping to change its type to {t}",
                    r.name
                ));
                ec2.stop_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .ctx("ec2:StopInstances")?;
                wait_instance(aws, &id, InstanceStateName::Stopped, timeout).await?;
                ec2.modify_instance_attribute()
                    .instance_id(&id)
                    .instance_type(AttributeValue::builder().value(t).build())
                    .send()
                    .await
                    .ctx("ec2:ModifyInstanceAttribute")?;
                ec2.start_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .ctx("ec2:StartInstances")?;
                wait_instance(aws, &id, InstanceStateName::Running, timeout).await?;
                say(format!("instance {} ({id}) runs as {t}", r.name));
            }
        }
        (Kind::Instance, Action::Delete) => {
            let id = r.id.clone().unwrap_or_default();
            terminate(aws, &id, timeout).await?;
            say(format!("terminated instance {} ({id})", r.name));
        }
        (Kind::ElasticIp, Action::Create) => {
            let out = ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(tags(stack, &r.name, ResourceType::ElasticIp, &[]))
                .send()
                .await
                .ctx("ec2:AllocateAddress")?;
            let id = out.allocation_id().unwrap_or_default().to_string();
            let ip = out.public_ip().unwrap_or_default().to_string();
            ids.insert((r.kind, r.name.clone()), id.clone());
            associate(aws, ids, r, &id).await?;
            say(format!(
                "Elastic IP {} ({ip}) → instance {}",
                r.name,
                r.text("instance")
            ));
        }
        (Kind::ElasticIp, Action::Update) => {
            let id = id_of(ids, r.kind, &r.name)?;
            associate(aws, ids, r, &id).await?;
            say(format!(
                "Elastic IP {} → instance {}",
                r.name,
                r.text("instance")
            ));
        }
        (Kind::ElasticIp, Action::Delete) => {
            let id = r.id.clone().unwrap_or_default();
            let assoc = r.input("association_id");
            if !assoc.is_empty() {
                match ec2
                    .disassociate_address()
                    .association_id(assoc)
                    .send()
                    .await
                    .ctx("ec2:DisassociateAddress")
                {
                    Ok(_) => {}
                    // Terminating the instance already released the association.
                    Err(e) if e.kind() == Some(crate::ErrorKind::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            ec2.release_address()
                .allocation_id(&id)
                .send()
                .await
                .ctx("ec2:ReleaseAddress")?;
            say(format!(
                "released Elastic IP {} ({})",
                r.name,
                r.input("public_ip")
            ));
        }
        (kind, action) => {
            return Err(AwsError::invalid(
                format!("cannot {action:?} a {} in place", kind.as_str()),
                "report this bug with the plan file",
            ))
        }
    }
    Ok(())
}

async fn associate(aws: &Aws, ids: &Ids, r: &Resource, allocation: &str) -> Result<(), AwsError> {
    let inst = id_of(ids, Kind::Instance, r.text("instance"))?;
    aws.ec2()
        .associate_address()
        .allocation_id(allocation)
        .instance_id(inst)
        .allow_reassociation(true)
        .send()
        .await
        .ctx("ec2:AssociateAddress")?;
    Ok(())
}

async fn terminate(aws: &Aws, id: &str, timeout: Duration) -> Result<(), AwsError> {
    aws.ec2()
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .ctx("ec2:TerminateInstances")?;
    wait_instance(aws, id, InstanceStateName::Terminated, timeout).await
}

/// Polls until the instance reaches `want`.
async fn wait_instance(
    aws: &Aws,
    id: &str,
    want: InstanceStateName,
    timeout: Duration,
) -> Result<(), AwsError> {
    let start = Instant::now();
    let mut last = String::from("unknown");
    loop {
        let out = aws
            .ec2()
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .ctx("ec2:DescribeInstances")?;
        let state = out
            .reservations()
            .iter()
            .flat_map(aws_sdk_ec2::types::Reservation::instances)
            .find_map(|i| i.state().and_then(|s| s.name()).cloned());
        if let Some(s) = state {
            if s == want {
                return Ok(());
            }
            if want == InstanceStateName::Running
                && matches!(
                    s,
                    InstanceStateName::Terminated | InstanceStateName::ShuttingDown
                )
            {
                return Err(AwsError::invalid(
                    format!("instance {id} stopped while starting ({})", s.as_str()),
                    "look at the instance's state reason in the EC2 console (capacity, image, volume limits)",
                ));
            }
            last = s.as_str().to_string();
        }
        if start.elapsed() >= timeout {
            return Err(AwsError::Timeout {
                what: format!("instance {id} reaching {}", want.as_str()),
                secs: timeout.as_secs(),
                state: last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_and_arm_detection() {
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
        assert!(is_arm("t4g.small"));
        assert!(is_arm("c7gn.large"));
        assert!(!is_arm("t3.small"));
        assert!(!is_arm("m6i.large"));
        assert!(USER_DATA.contains("systemctl enable --now docker"));
    }
}
