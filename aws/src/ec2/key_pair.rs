//! The key pair an EC2 stack's instances take: imported from the stack's public key (then the
//! stack owns it, tagged with the key's hash) or named only (then it must exist already and
//! is never changed).

use aws_sdk_ec2::types::{Filter, ResourceType};

use crate::error::SdkResultExt;
use crate::family::{ec2_tags, sha256_hex, tag_of, Step};
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource};
use crate::spec::Ec2Spec;
use crate::{Aws, AwsError, TAG_STACK};

/// The key pair the stack imports, if it imports one; refuses a name that is taken or a named
/// key pair that does not exist.
pub(crate) async fn desired(
    aws: &Aws,
    stack: &str,
    e: &Ec2Spec,
) -> Result<Option<Resource>, AwsError> {
    match (&e.key_name, &e.public_key) {
        (Some(key), Some(public)) => {
            refuse_foreign(aws, stack, key).await?;
            Ok(Some(
                Resource::new(Kind::KeyPair, key.as_str())
                    .attr("public_key_sha256", sha256_hex(public.trim().as_bytes()))
                    .extra("public_key", public.trim()),
            ))
        }
        (Some(key), None) => {
            require_existing(aws, key).await?;
            Ok(None)
        }
        (None, _) => Ok(None),
    }
}

async fn key_pairs_named(
    aws: &Aws,
    key: &str,
) -> Result<aws_sdk_ec2::operation::describe_key_pairs::DescribeKeyPairsOutput, AwsError> {
    aws.ec2()
        .describe_key_pairs()
        .filters(Filter::builder().name("key-name").values(key).build())
        .send()
        .await
        .ctx("ec2:DescribeKeyPairs")
}

/// A key pair of that name that is not the stack's (another stack's, or made by hand) would
/// make the import fail half-way through apply: refuse now.
async fn refuse_foreign(aws: &Aws, stack: &str, key: &str) -> Result<(), AwsError> {
    let found = key_pairs_named(aws, key).await?;
    if let Some(k) = found
        .key_pairs()
        .iter()
        // Filtered here too: not every EC2 implementation filters key pairs.
        .find(|k| k.key_name() == Some(key) && tag_of(k.tags(), TAG_STACK) != Some(stack))
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
    Ok(())
}

/// Not ours to manage: it must exist already.
async fn require_existing(aws: &Aws, key: &str) -> Result<(), AwsError> {
    if key_pairs_named(aws, key).await?.key_pairs().is_empty() {
        return Err(AwsError::invalid(
            format!("key pair `{key}` does not exist in {}", aws.region),
            "set ec2.public_key_file to an OpenSSH public key to import it, or create the key pair in EC2",
        ));
    }
    Ok(())
}

/// The stack's key pairs. Few per account; filtered by tag here (not every EC2
/// implementation filters key pairs by tag server-side).
pub(crate) async fn actual(aws: &Aws, stack: &str) -> Result<Vec<Resource>, AwsError> {
    let keys = aws
        .ec2()
        .describe_key_pairs()
        .send()
        .await
        .ctx("ec2:DescribeKeyPairs")?;
    let mut out = Vec::new();
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
    Ok(out)
}

/// Runs one key pair change: key material cannot change, so a replacement deletes and
/// imports again under the same name.
pub(crate) async fn apply(step: &mut Step<'_>, ch: &Change) -> Result<(), AwsError> {
    let r = ch.resource();
    let ec2 = step.aws.ec2();
    if matches!(ch.action, Action::Replace | Action::Delete) {
        ec2.delete_key_pair()
            .key_name(&r.name)
            .send()
            .await
            .ctx("ec2:DeleteKeyPair")?;
    }
    match ch.action {
        Action::Delete => {
            step.say(format!("deleted key pair {}", r.name));
            return Ok(());
        }
        Action::Update => return Err(super::cannot_in_place(r.kind, ch.action)),
        Action::Create | Action::Replace => {}
    }
    let sha = r.text("public_key_sha256").to_string();
    let out = ec2
        .import_key_pair()
        .key_name(&r.name)
        .public_key_material(aws_sdk_ec2::primitives::Blob::new(
            r.input("public_key").as_bytes(),
        ))
        .tag_specifications(ec2_tags(
            step.stack,
            &r.name,
            ResourceType::KeyPair,
            &[("fullslack:public-key-sha256", &sha)],
        ))
        .send()
        .await
        .ctx("ec2:ImportKeyPair")?;
    step.say(format!("imported key pair {}", r.name));
    step.remember(
        r.kind,
        &r.name,
        out.key_pair_id().unwrap_or_default().to_string(),
    );
    Ok(())
}
