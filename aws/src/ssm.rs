//! Secrets in SSM Parameter Store: SecureString parameters under `/<stack>/<NAME>`, tagged with
//! the stack. Values travel only inside [`SecretString`]; listings carry names and versions.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};

use crate::{Aws, AwsError, ExposeSecret, SecretString, TAG_STACK};

/// What `secrets list` shows: never the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretInfo {
    /// Short name (`NAME` of `/<stack>/NAME`).
    pub name: String,
    /// Full parameter name.
    pub parameter: String,
    /// Parameter version (1 on creation, +1 on every `set`).
    pub version: i64,
    /// Last change, RFC 3339, when AWS reports it.
    pub last_modified: Option<String>,
}

/// Checks a secret's short name and returns the parameter name `/<stack>/<name>`.
pub fn parameter_name(stack: &str, name: &str) -> Result<String, AwsError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(AwsError::invalid(
            format!("`{name}` is not a valid secret name"),
            "use letters, digits, `_`, `-` or `.` (e.g. jwt-secret)",
        ));
    }
    Ok(format!("/{stack}/{name}"))
}

/// Stores (creates or overwrites) a SecureString and tags it with the stack. Returns the
/// new version.
pub async fn put(
    aws: &Aws,
    stack: &str,
    name: &str,
    value: &SecretString,
) -> Result<i64, AwsError> {
    let param = parameter_name(stack, name)?;
    if value.expose_secret().is_empty() {
        return Err(AwsError::invalid(
            "the secret value is empty",
            "pipe the value on standard input or type it at the prompt",
        ));
    }
    let ssm = aws.ssm();
    let out = ssm
        .put_parameter()
        .name(&param)
        .value(value.expose_secret())
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ssm:PutParameter", e))?;
    // Tags cannot be given together with overwrite: add them afterwards (idempotent).
    ssm.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(&param)
        .tags(tag(TAG_STACK, stack)?)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ssm:AddTagsToResource", e))?;
    Ok(out.version)
}

fn tag(k: &str, v: &str) -> Result<Tag, AwsError> {
    Tag::builder()
        .key(k)
        .value(v)
        .build()
        .map_err(|e| AwsError::invalid(format!("bad tag: {e}"), "report this bug"))
}

/// Every secret of the stack (names, versions, dates), sorted by name.
pub async fn list(aws: &Aws, stack: &str) -> Result<Vec<SecretInfo>, AwsError> {
    let prefix = format!("/{stack}/");
    let mut out = Vec::new();
    let mut pages = aws
        .ssm()
        .get_parameters_by_path()
        .path(&prefix)
        .recursive(false)
        .with_decryption(false)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("ssm:GetParametersByPath", e))?;
        for p in page.parameters() {
            let parameter = p.name().unwrap_or_default().to_string();
            out.push(SecretInfo {
                name: parameter
                    .strip_prefix(&prefix)
                    .unwrap_or(&parameter)
                    .to_string(),
                parameter,
                version: p.version(),
                last_modified: p.last_modified_date().map(ToString::to_string),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes one secret. A missing one is an error that names it.
pub async fn delete(aws: &Aws, stack: &str, name: &str) -> Result<(), AwsError> {
    let param = parameter_name(stack, name)?;
    match aws.ssm().delete_parameter().name(&param).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = AwsError::from_sdk("ssm:DeleteParameter", e);
            if e.code() == Some("ParameterNotFound") {
                Err(AwsError::invalid(
                    format!("stack `{stack}` has no secret `{name}` ({param})"),
                    "`fullslack secrets list --stack FILE` shows the names",
                ))
            } else {
                Err(e)
            }
        }
    }
}

/// Reads one parameter's decrypted value (for deploys that must hand it to a container).
pub async fn get(aws: &Aws, parameter: &str) -> Result<SecretString, AwsError> {
    let out = aws
        .ssm()
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ssm:GetParameter", e))?;
    Ok(SecretString::from(
        out.parameter()
            .and_then(|p| p.value())
            .unwrap_or_default()
            .to_string(),
    ))
}

/// The ARNs of parameters (what ECS task definitions reference), without reading the values.
/// Every name must exist: a missing one is an error that says how to create it.
pub async fn arns(aws: &Aws, names: &[String]) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    // GetParameters takes at most 10 names per call.
    for chunk in names.chunks(10) {
        let resp = aws
            .ssm()
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .with_decryption(false)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ssm:GetParameters", e))?;
        if let Some(missing) = resp.invalid_parameters().first() {
            return Err(AwsError::invalid(
                format!("the stack references SSM parameter `{missing}`, which does not exist"),
                "store it with `fullslack secrets set NAME --stack FILE` (value on stdin), or fix the name in [secrets]",
            ));
        }
        for p in resp.parameters() {
            if let (Some(n), Some(a)) = (p.name(), p.arn()) {
                out.insert(n.to_string(), a.to_string());
            }
        }
    }
    Ok(out)
}
