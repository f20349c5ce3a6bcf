//! What every resource family (`ec2::*`, `ecs::*`, `ecr`) shares, in one place so that no
//! family has to import another's internals: the apply skeleton ([`Step`]: the ids known so
//! far, the replaced resources to retire last, the wait timeout, the progress lines; and
//! [`Lifecycle`] with its one dispatcher [`apply_lifecycle`]), the stack
//! and resource tags in each SDK's shape and reading them back, retrying while AWS still
//! reports a resource in use, and hashing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::Tag as LbTag;
use sha2::{Digest, Sha256};

use crate::plan::{Action, Change};
use crate::resource::Kind;
use crate::{Aws, AwsError};

/// Tag naming the stack a resource belongs to.
pub const TAG_STACK: &str = "fullslack:stack";
/// Tag holding a resource's logical name within its stack.
pub const TAG_RESOURCE: &str = "fullslack:resource";

/// Ids of resources known while applying: (kind, logical name) → AWS id.
pub(crate) type Ids = HashMap<(Kind, String), String>;

/// What replacements left behind: (kind, logical name, old id). Removed after every other
/// step, so an Elastic IP has already moved to the new instance and instances already use a
/// new security group when the old ones go.
pub(crate) type Retire = Vec<(Kind, String, String)>;

/// One apply run as every family's `apply` sees it: each change of the plan is one call with
/// the same step.
pub(crate) struct Step<'a> {
    /// The connection.
    pub aws: &'a Aws,
    /// The stack's name (its tag value).
    pub stack: &'a str,
    /// Ids of what exists, updated as steps create things.
    pub ids: Ids,
    /// Replaced resources to remove at the end.
    pub retire: Retire,
    /// How long to wait for instances and services.
    pub timeout: Duration,
    /// Receives one line per step done.
    pub say: &'a (dyn Fn(String) + Sync),
}

impl Step<'_> {
    /// Reports one step done.
    pub fn say(&self, line: String) {
        (self.say)(line);
    }

    /// The id of a resource the step needs (made earlier in this apply or read before it).
    pub fn id_of(&self, kind: Kind, name: &str) -> Result<String, AwsError> {
        id_of(&self.ids, kind, name)
    }

    /// Records the id of a resource just made.
    pub fn remember(&mut self, kind: Kind, name: &str, id: String) {
        self.ids.insert((kind, name.to_string()), id);
    }
}

/// A family whose changes take one of three paths: create (also for a replacement, whose old
/// resource the family retires), update in place, or delete. [`apply_lifecycle`] sends a
/// change down its path.
pub(crate) trait Lifecycle {
    /// Makes the resource of `ch`, also when it replaces an old one.
    fn create(
        step: &mut Step<'_>,
        ch: &Change,
    ) -> impl std::future::Future<Output = Result<(), AwsError>> + Send;
    /// Changes the resource of `ch` in place.
    fn update(
        step: &mut Step<'_>,
        ch: &Change,
    ) -> impl std::future::Future<Output = Result<(), AwsError>> + Send;
    /// Removes the resource of `ch`.
    fn delete(
        step: &mut Step<'_>,
        ch: &Change,
    ) -> impl std::future::Future<Output = Result<(), AwsError>> + Send;
}

/// Runs one change of a [`Lifecycle`] family: Create and Replace create, Update updates,
/// Delete deletes.
pub(crate) async fn apply_lifecycle<F: Lifecycle>(
    step: &mut Step<'_>,
    ch: &Change,
) -> Result<(), AwsError> {
    match ch.action {
        Action::Create | Action::Replace => F::create(step, ch).await,
        Action::Update => F::update(step, ch).await,
        Action::Delete => F::delete(step, ch).await,
    }
}

/// The id of a resource a step needs; a missing one means the plan lacks a step.
pub(crate) fn id_of(ids: &Ids, kind: Kind, name: &str) -> Result<String, AwsError> {
    ids.get(&(kind, name.to_string())).cloned().ok_or_else(|| {
        AwsError::invalid(
            format!("{} {name} is needed but does not exist", kind.as_str()),
            "run `fullslack plan` again: the plan is missing a step",
        )
    })
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// EC2's tags for a new resource: `Name`, the stack and resource tags, and `more`.
pub(crate) fn ec2_tags(
    stack: &str,
    name: &str,
    rt: ResourceType,
    more: &[(&str, &str)],
) -> TagSpecification {
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

/// The value of an EC2 tag.
pub(crate) fn tag_of<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// EC2's filter for the stack's resources.
pub(crate) fn stack_filter(stack: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{TAG_STACK}"))
        .values(stack)
        .build()
}

/// Load balancer, target group and listener tags.
pub(crate) fn lb_tags(stack: &str, name: &str) -> Vec<LbTag> {
    vec![
        LbTag::builder().key(TAG_STACK).value(stack).build(),
        LbTag::builder().key(TAG_RESOURCE).value(name).build(),
    ]
}

/// ECS tags (cluster, task definition, service).
pub(crate) fn ecs_tags(stack: &str, name: &str) -> Vec<aws_sdk_ecs::types::Tag> {
    vec![
        aws_sdk_ecs::types::Tag::builder()
            .key(TAG_STACK)
            .value(stack)
            .build(),
        aws_sdk_ecs::types::Tag::builder()
            .key(TAG_RESOURCE)
            .value(name)
            .build(),
    ]
}

/// Whether ECS tags say the resource is the stack's.
pub(crate) fn ecs_tagged(tags: &[aws_sdk_ecs::types::Tag], stack: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(TAG_STACK) && t.value() == Some(stack))
}

/// Retries `op` while AWS answers that the resource is still in use, up to `timeout`.
pub(crate) async fn retry_conflict<F, Fut>(timeout: Duration, mut op: F) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), AwsError>>,
{
    let start = Instant::now();
    loop {
        match op().await {
            Err(e) if e.kind() == Some(crate::ErrorKind::Conflict) && start.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}
