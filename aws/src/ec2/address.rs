//! One Elastic IP per instance of an EC2 stack: allocated, associated with its instance (and
//! moved to a replacement instance before the old one goes), released.

use std::collections::HashMap;

use aws_sdk_ec2::types::{DomainType, ResourceType};

use crate::error::SdkResultExt;
use crate::family::{ec2_tags, stack_filter, tag_of, Step};
use crate::plan::{Action, Change, Unchanged};
use crate::resource::{Kind, Resource};
use crate::{Aws, AwsError, TAG_RESOURCE};

/// The address of instance `name`, named like it.
pub(crate) fn desired(name: &str) -> Resource {
    Resource::new(Kind::ElasticIp, name).attr("instance", name)
}

/// The stack's addresses (by tags); `inst_names` maps instance ids to logical names.
pub(crate) async fn actual(
    aws: &Aws,
    stack: &str,
    inst_names: &HashMap<String, String>,
) -> Result<Vec<Resource>, AwsError> {
    let addrs = aws
        .ec2()
        .describe_addresses()
        .filters(stack_filter(stack))
        .send()
        .await
        .ctx("ec2:DescribeAddresses")?;
    let mut out = Vec::new();
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
    unchanged: &mut Vec<Unchanged>,
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

/// Runs one Elastic IP change.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    match ch.action {
        Action::Create => {
            let out = step
                .aws
                .ec2()
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(ec2_tags(step.stack, &r.name, ResourceType::ElasticIp, &[]))
                .send()
                .await
                .ctx("ec2:AllocateAddress")?;
            let id = out.allocation_id().unwrap_or_default().to_string();
            let ip = out.public_ip().unwrap_or_default().to_string();
            step.remember(r.kind, &r.name, id.clone());
            associate(step, r, &id).await?;
            step.say(format!(
                "Elastic IP {} ({ip}) → instance {}",
                r.name,
                r.text("instance")
            ));
        }
        Action::Update => {
            let id = step.id_of(r.kind, &r.name)?;
            associate(step, r, &id).await?;
            step.say(format!(
                "Elastic IP {} → instance {}",
                r.name,
                r.text("instance")
            ));
        }
        Action::Delete => release(step, r).await?,
        Action::Replace => return Err(super::cannot_in_place(r.kind, ch.action)),
    }
    Ok(())
}

async fn associate(step: &Step<'_>, r: &Resource, allocation: &str) -> Result<(), AwsError> {
    let inst = step.id_of(Kind::Instance, r.text("instance"))?;
    step.aws
        .ec2()
        .associate_address()
        .allocation_id(allocation)
        .instance_id(inst)
        .allow_reassociation(true)
        .send()
        .await
        .ctx("ec2:AssociateAddress")?;
    Ok(())
}

async fn release(step: &Step<'_>, r: &Resource) -> Result<(), AwsError> {
    let ec2 = step.aws.ec2();
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
    step.say(format!(
        "released Elastic IP {} ({})",
        r.name,
        r.input("public_ip")
    ));
    Ok(())
}
