//! An EC2 stack's instances: the image (`al2023`, `debian` or an `ami-…` id) resolved for the
//! instance type's architecture, first-boot user data that installs Docker and Nginx, IMDSv2
//! only, an encrypted gp3 root volume; launched, changed in place where EC2 can (groups,
//! metadata options, a larger volume, a type of the same architecture) and terminated.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    ResourceType, VolumeType,
};
use base64::Engine;

use crate::error::SdkResultExt;
use crate::family::{ec2_tags, stack_filter, tag_of, Lifecycle, Step};
use crate::plan::Change;
use crate::resource::{is_arm, Kind, Resource, Value};
use crate::spec::Ec2Spec;
use crate::{Aws, AwsError, TAG_RESOURCE};

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

/// The image an instance launches from: its id and root device name.
pub(crate) struct Image {
    id: String,
    root_device: String,
}

/// Resolves `al2023` / `debian` to the newest matching image; an `ami-…` id is checked.
pub(crate) async fn resolve_image(
    aws: &Aws,
    alias: &str,
    instance_type: &str,
) -> Result<Image, AwsError> {
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
    Ok(Image {
        id: best.image_id().unwrap_or_default().to_string(),
        root_device: best.root_device_name().unwrap_or("/dev/xvda").to_string(),
    })
}

/// Instance `name` as the stack wants it.
pub(crate) fn desired(stack: &str, name: &str, e: &Ec2Spec, image: &Image) -> Resource {
    let user_data_sha = crate::family::sha256_hex(USER_DATA.as_bytes());
    let inst = Resource::new(Kind::Instance, name)
        .attr("instance_type", e.instance_type.as_str())
        .attr("image", e.ami.as_str())
        .attr("key_name", e.key_name.clone().unwrap_or_default())
        .attr("security_group", Value::set([stack]))
        .attr("user_data_sha256", user_data_sha.as_str())
        .attr("volume_gb", e.volume_gb.to_string())
        // IMDSv2 only: a token is required, so an SSRF in anything on the instance
        // cannot read the role's credentials with a plain GET.
        .attr("metadata_tokens", "required")
        .extra("ami_id", image.id.as_str())
        .extra("root_device", image.root_device.as_str());
    match &e.subnet_id {
        Some(s) => inst.attr("subnet", s.as_str()),
        None => inst,
    }
}

/// The stack's instances that are not terminated (by tags), and their ids → logical names.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
    sg_names: &HashMap<String, String>,
) -> Result<(Vec<Resource>, HashMap<String, String>), AwsError> {
    let states = ["pending", "running", "stopping", "stopped"];
    let instances = stack_instances(aws, stack, &states).await?;
    let volume_gb = root_volume_sizes(aws, &instances).await?;
    let mut inst_names = HashMap::new();
    let mut out = Vec::new();
    for i in &instances {
        let r = instance_of(i, sg_names, &volume_gb);
        inst_names.insert(r.id.clone().unwrap_or_default(), r.name.clone());
        out.push(r);
    }
    Ok((out, inst_names))
}

/// The stack's instances (by tag) in one of `states`, every page read.
pub(crate) async fn stack_instances(
    aws: &Aws,
    stack: &str,
    states: &[&str],
) -> Result<Vec<aws_sdk_ec2::types::Instance>, AwsError> {
    let mut pages = aws
        .ec2()
        .describe_instances()
        .filters(stack_filter(stack))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(states.iter().map(|s| (*s).to_string()).collect()))
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
    Ok(instances)
}

/// The id of an instance's root volume.
fn root_volume_of(i: &aws_sdk_ec2::types::Instance) -> Option<&str> {
    let root = i.root_device_name()?;
    i.block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root))
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_id())
}

/// Root volume id → size in GiB, one call for all instances.
async fn root_volume_sizes(
    aws: &Aws,
    instances: &[aws_sdk_ec2::types::Instance],
) -> Result<HashMap<String, String>, AwsError> {
    let root_volumes: Vec<String> = instances
        .iter()
        .filter_map(root_volume_of)
        .map(str::to_string)
        .collect();
    let mut volume_gb = HashMap::new();
    if root_volumes.is_empty() {
        return Ok(volume_gb);
    }
    let vols = aws
        .ec2()
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
    Ok(volume_gb)
}

/// One instance as a resource.
fn instance_of(
    i: &aws_sdk_ec2::types::Instance,
    sg_names: &HashMap<String, String>,
    volume_gb: &HashMap<String, String>,
) -> Resource {
    let id = i.instance_id().unwrap_or_default().to_string();
    let name = tag_of(i.tags(), TAG_RESOURCE).unwrap_or(&id).to_string();
    let sg = Value::set(
        i.security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .map(|g| sg_names.get(g).cloned().unwrap_or_else(|| g.to_string())),
    );
    let root_volume = root_volume_of(i).unwrap_or_default().to_string();
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
    r
}

/// The logical name of an instance's security group (a one-member set).
fn sg_name(r: &Resource) -> String {
    r.list("security_group")
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Instances: launched and waited for (a replaced one is retired at the end), changed in
/// place, terminated.
pub(crate) struct Instances;

impl Lifecycle for Instances {
    async fn create(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        launch(step, ch).await
    }

    async fn update(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        update(step, ch).await
    }

    async fn delete(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
        let r = ch.resource();
        let id = r.id.clone().unwrap_or_default();
        terminate(step.aws, &id, step.timeout).await?;
        step.say(format!("terminated instance {} ({id})", r.name));
        Ok(())
    }
}

/// Launches a new instance and waits until it runs; a replaced one is retired at the end.
async fn launch(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let stack = step.stack;
    let sg = step.id_of(Kind::SecurityGroup, &sg_name(r))?;
    let volume: i32 = r.text("volume_gb").parse().unwrap_or(20);
    let user_data = base64::engine::general_purpose::STANDARD.encode(USER_DATA);
    let more = [
        ("fullslack:image", r.text("image")),
        ("fullslack:user-data-sha256", r.text("user_data_sha256")),
    ];
    let root = EbsBlockDevice::builder()
        .volume_size(volume)
        .volume_type(VolumeType::Gp3)
        .encrypted(true)
        .delete_on_termination(true)
        .build();
    let mut req = step
        .aws
        .ec2()
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
                .ebs(root)
                .build(),
        )
        .tag_specifications(ec2_tags(stack, &r.name, ResourceType::Instance, &more))
        .tag_specifications(ec2_tags(stack, &r.name, ResourceType::Volume, &[]));
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
    step.say(format!(
        "launched instance {} ({id}), waiting until it runs",
        r.name
    ));
    wait_instance(step.aws, &id, InstanceStateName::Running, step.timeout).await?;
    step.say(format!("instance {} ({id}) is running", r.name));
    step.remember(r.kind, &r.name, id);
    // The old one is terminated last, after its Elastic IP has moved to the new one.
    if let Some(old) = ch.before.as_ref().and_then(|b| b.id.clone()) {
        step.retire.push((r.kind, r.name.clone(), old));
    }
    Ok(())
}

/// Changes what EC2 changes on a running instance, one changed attribute at a time.
async fn update(step: &Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let id = step.id_of(r.kind, &r.name)?;
    let changed = |k: &str| ch.changed.iter().any(|c| c == k);
    if changed("security_group") {
        set_security_group(step, r, &id).await?;
    }
    if changed("metadata_tokens") {
        step.aws
            .ec2()
            .modify_instance_metadata_options()
            .instance_id(&id)
            .http_tokens(HttpTokensState::Required)
            .http_endpoint(InstanceMetadataEndpointState::Enabled)
            .send()
            .await
            .ctx("ec2:ModifyInstanceMetadataOptions")?;
        step.say(format!("instance {}: IMDSv2 required", r.name));
    }
    if changed("volume_gb") {
        grow_volume(step, ch).await?;
    }
    if changed("instance_type") {
        resize(step, r, &id).await?;
    }
    Ok(())
}

async fn set_security_group(step: &Step<'_>, r: &Resource, id: &str) -> Result<(), AwsError> {
    step.aws
        .ec2()
        .modify_instance_attribute()
        .instance_id(id)
        .groups(step.id_of(Kind::SecurityGroup, &sg_name(r))?)
        .send()
        .await
        .ctx("ec2:ModifyInstanceAttribute")?;
    step.say(format!(
        "instance {}: security groups set to {}",
        r.name,
        sg_name(r)
    ));
    Ok(())
}

async fn grow_volume(step: &Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let volume = ch
        .before
        .as_ref()
        .map(|b| b.input("root_volume").to_string())
        .unwrap_or_default();
    let gb: i32 = r.text("volume_gb").parse().unwrap_or(20);
    step.aws
        .ec2()
        .modify_volume()
        .volume_id(&volume)
        .size(gb)
        .send()
        .await
        .ctx("ec2:ModifyVolume")?;
    step.say(format!(
        "instance {}: root volume {volume} grown to {gb} GiB (grow the file system on the host: the default images do at boot)",
        r.name
    ));
    Ok(())
}

/// Stop, change the type, start: EC2 changes the type of a stopped instance only.
async fn resize(step: &Step<'_>, r: &Resource, id: &str) -> Result<(), AwsError> {
    let ec2 = step.aws.ec2();
    let t = r.text("instance_type");
    step.say(format!(
        "instance {} ({id}): stopping to change its type to {t}",
        r.name
    ));
    ec2.stop_instances()
        .instance_ids(id)
        .send()
        .await
        .ctx("ec2:StopInstances")?;
    wait_instance(step.aws, id, InstanceStateName::Stopped, step.timeout).await?;
    ec2.modify_instance_attribute()
        .instance_id(id)
        .instance_type(AttributeValue::builder().value(t).build())
        .send()
        .await
        .ctx("ec2:ModifyInstanceAttribute")?;
    ec2.start_instances()
        .instance_ids(id)
        .send()
        .await
        .ctx("ec2:StartInstances")?;
    wait_instance(step.aws, id, InstanceStateName::Running, step.timeout).await?;
    step.say(format!("instance {} ({id}) runs as {t}", r.name));
    Ok(())
}

/// Terminates an instance and waits until it is gone.
pub(crate) async fn terminate(aws: &Aws, id: &str, timeout: Duration) -> Result<(), AwsError> {
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
    fn arm_detection_and_user_data() {
        assert!(is_arm("t4g.small"));
        assert!(is_arm("c7gn.large"));
        assert!(!is_arm("t3.small"));
        assert!(!is_arm("m6i.large"));
        assert!(USER_DATA.contains("systemctl enable --now docker"));
    }
}
