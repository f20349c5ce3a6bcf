//! ECR: the stack's repository and registry credentials for the Docker Engine. Authorization
//! tokens expire after 12 hours, so every deploy asks for a fresh one (nothing is cached).

use base64::Engine;

use aws_sdk_ecr::types::ImageTagMutability;

use crate::error::SdkResultExt;
use crate::plan::{Action, Change};
use crate::resource::{Kind, Resource};
use crate::{Aws, AwsError, SecretString, TAG_RESOURCE, TAG_STACK};

/// Credentials for `docker login` / the Engine API's `X-Registry-Auth`: the one registry
/// credential type of the workspace (the CLI's `push` uses it for every registry, not only ECR).
#[derive(Clone)]
pub struct RegistryAuth {
    /// Registry host (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`, `127.0.0.1:5000`), or Docker
    /// Hub's `https://index.docker.io/v1/`.
    pub server: String,
    /// User name (always `AWS` for ECR).
    pub username: String,
    /// Password, or the ECR token's password part (redacted in Debug).
    pub password: SecretString,
}

// The password as `[redacted]`, the word every listing of the CLI uses for a secret
// (secrecy's own Debug says `[REDACTED]` with the type name).
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// A fresh authorization token for the account's registry in this region.
pub async fn registry_auth(aws: &Aws) -> Result<RegistryAuth, AwsError> {
    let out = aws
        .ecr()
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ecr:GetAuthorizationToken", e))?;
    let data = out.authorization_data().first().ok_or_else(|| {
        AwsError::invalid(
            "ECR returned no authorization data",
            "check the region and that ECR is available to the account",
        )
    })?;
    let token = data.authorization_token().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            AwsError::invalid(
                "ECR's authorization token is not base64 `user:password`",
                "retry; if it persists, report the region and SDK version",
            )
        })?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| {
        AwsError::invalid(
            "ECR's authorization token has no `user:password` form",
            "retry; if it persists, report the region and SDK version",
        )
    })?;
    let endpoint = data.proxy_endpoint().unwrap_or_default();
    let server = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    Ok(RegistryAuth {
        server,
        username: username.to_string(),
        password: SecretString::from(password),
    })
}

/// The stack's repository, if it exists and carries the stack's tag.
pub(crate) async fn actual_repository(
    aws: &Aws,
    stack: &str,
    name: &str,
) -> Result<Option<Resource>, AwsError> {
    let ecr = aws.ecr();
    let out = match ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::from_sdk("ecr:DescribeRepositories", e);
            if e.code() == Some("RepositoryNotFoundException") {
                return Ok(None);
            }
            return Err(e);
        }
    };
    let Some(repo) = out.repositories().first() else {
        return Ok(None);
    };
    let arn = repo.repository_arn().unwrap_or_default().to_string();
    let tags = ecr
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .ctx("ecr:ListTagsForResource")?;
    let ours = tags
        .tags()
        .iter()
        .any(|t| t.key() == TAG_STACK && t.value() == stack);
    if !ours {
        return Ok(None);
    }
    let mut r = Resource::new(Kind::EcrRepository, name)
        .attr(
            "tag_mutability",
            repo.image_tag_mutability()
                .map(ImageTagMutability::as_str)
                .unwrap_or_default(),
        )
        .extra("uri", repo.repository_uri().unwrap_or_default());
    r.id = Some(arn);
    Ok(Some(r))
}

/// Refuses, at plan time, a repository name that exists and is not the stack's (another
/// stack's, or made by hand): creating it would fail half-way through apply, and destroying
/// this stack must never delete another's images.
pub(crate) async fn check_repository_free(
    aws: &Aws,
    stack: &str,
    name: &str,
) -> Result<(), AwsError> {
    let ecr = aws.ecr();
    let out = match ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::from_sdk("ecr:DescribeRepositories", e);
            if e.code() == Some("RepositoryNotFoundException") {
                return Ok(());
            }
            return Err(e);
        }
    };
    let Some(repo) = out.repositories().first() else {
        return Ok(());
    };
    let tags = ecr
        .list_tags_for_resource()
        .resource_arn(repo.repository_arn().unwrap_or_default())
        .send()
        .await
        .ctx("ecr:ListTagsForResource")?;
    let owner = tags
        .tags()
        .iter()
        .find(|t| t.key() == TAG_STACK)
        .map(|t| t.value().to_string());
    match owner {
        Some(o) if o == stack => Ok(()),
        other => Err(AwsError::invalid(
            format!(
                "ECR repository `{name}` already exists and {}",
                match other {
                    Some(o) => format!("belongs to stack `{o}`"),
                    None => "was not made by a fullslack stack".into(),
                }
            ),
            format!("give this stack its own repository: image.name = \"{stack}/chat\" (each stack owns, and on destroy deletes, its repository)"),
        )),
    }
}

/// The repository the stack wants.
pub(crate) fn desired_repository(name: &str) -> Resource {
    Resource::new(Kind::EcrRepository, name).attr("tag_mutability", "MUTABLE")
}

/// Creates or deletes the repository.
pub(crate) async fn apply(
    aws: &Aws,
    stack: &str,
    ch: &Change,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), AwsError> {
    let r = ch.resource();
    let ecr = aws.ecr();
    match ch.action {
        Action::Create => {
            let out = ecr
                .create_repository()
                .repository_name(&r.name)
                .image_tag_mutability(ImageTagMutability::Mutable)
                .tags(ecr_tag(TAG_STACK, stack)?)
                .tags(ecr_tag(TAG_RESOURCE, &r.name)?)
                .send()
                .await
                .ctx("ecr:CreateRepository")?;
            let uri = out
                .repository()
                .and_then(|r| r.repository_uri())
                .unwrap_or_default();
            say(format!("created ECR repository {} ({uri})", r.name));
        }
        Action::Update | Action::Replace => {
            ecr.put_image_tag_mutability()
                .repository_name(&r.name)
                .image_tag_mutability(ImageTagMutability::Mutable)
                .send()
                .await
                .ctx("ecr:PutImageTagMutability")?;
            say(format!("ECR repository {}: tags mutable again", r.name));
        }
        Action::Delete => {
            // Its images go with it: they were pushed for this stack only.
            ecr.delete_repository()
                .repository_name(&r.name)
                .force(true)
                .send()
                .await
                .ctx("ecr:DeleteRepository")?;
            say(format!("deleted ECR repository {} and its images", r.name));
        }
    }
    Ok(())
}

fn ecr_tag(k: &str, v: &str) -> Result<aws_sdk_ecr::types::Tag, AwsError> {
    aws_sdk_ecr::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .map_err(|e| AwsError::invalid(format!("bad tag: {e}"), "report this bug"))
}
