//! EC2 stacks: a security group (80/443 from anywhere, 22 from the operator only), an imported
//! key pair, instances from a current image with user data that installs Docker and Nginx,
//! and one Elastic IP per instance. Everything carries the stack's tags; what exists is read
//! back by those tags, never from a local state file.
//!
//! One module per resource family, each with its desired / actual / apply:
//! - [`security_group`]: ingress rules as text, groups (ECS stacks use them too).
//! - [`key_pair`]: the imported public key.
//! - [`instance`]: image, user data, launch, in-place changes, termination.
//! - [`address`]: Elastic IPs and how they follow replaced instances.

pub mod address;
pub mod instance;
pub mod key_pair;
pub mod security_group;

pub use instance::USER_DATA;
pub use security_group::ingress_rules;

use crate::family::{apply_lifecycle, Step};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource};
use crate::spec::{Ec2Spec, StackSpec};
use crate::{Aws, AwsError};

/// The resources an EC2 stack wants.
pub(crate) async fn desired(
    aws: &Aws,
    spec: &StackSpec,
    e: &Ec2Spec,
) -> Result<Vec<Resource>, AwsError> {
    let stack = &spec.name;
    let vpc = crate::network::vpc_of(aws, e.subnet_id.as_deref()).await?;
    let image = instance::resolve_image(aws, &e.ami, &e.instance_type).await?;
    let mut out = vec![security_group::desired(stack, &vpc, e.ssh_cidr.as_deref())];
    out.extend(key_pair::desired(aws, stack, e).await?);
    for i in 1..=e.count {
        let name = format!("{stack}-{i}");
        out.push(instance::desired(stack, &name, e, &image));
        out.push(address::desired(&name));
    }
    Ok(out)
}

/// What exists for the stack (by tags).
pub(crate) async fn actual(aws: &Aws, stack: &str) -> Result<Vec<Resource>, AwsError> {
    let (mut out, sg_names) = security_group::actual(aws, stack).await?;
    out.extend(key_pair::actual(aws, stack).await?);
    let (instances, inst_names) = instance::actual(aws, stack, &sg_names).await?;
    out.extend(instances);
    out.extend(address::actual(aws, stack, &inst_names).await?);
    Ok(out)
}

/// Runs one EC2 change.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    match ch.resource().kind {
        Kind::SecurityGroup => apply_lifecycle::<security_group::SecurityGroups>(step, ch).await,
        Kind::KeyPair => key_pair::apply(step, ch).await,
        Kind::Instance => apply_lifecycle::<instance::Instances>(step, ch).await,
        Kind::ElasticIp => address::apply(step, ch).await,
        kind => Err(cannot_in_place(kind, ch.action)),
    }
}

/// A change the carry table never plans for this kind.
pub(crate) fn cannot_in_place(kind: Kind, action: Action) -> AwsError {
    AwsError::invalid(
        format!("cannot {action:?} a {} in place", kind.as_str()),
        "report this bug with the plan file",
    )
}

/// Removes what replacements left behind: instances first, then security groups.
pub(crate) async fn retire_all(step: &Step<'_>) -> Result<(), AwsError> {
    for (kind, name, id) in step.retire.iter().filter(|r| r.0 == Kind::Instance) {
        instance::terminate(step.aws, id, step.timeout).await?;
        step.say(format!(
            "terminated the replaced {} {name} ({id})",
            kind.as_str()
        ));
    }
    for (_, name, id) in step.retire.iter().filter(|r| r.0 == Kind::SecurityGroup) {
        security_group::delete_group(step.aws, id, step.timeout).await?;
        step.say(format!("deleted the replaced security group {name} ({id})"));
    }
    Ok(())
}
