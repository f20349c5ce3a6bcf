//! GitHub Actions workflows for a user's repository, rendered from `cli/templates/github/`
//! (`fullslack init --ci github`): `deploy.yml` (deploy on push to main, then health) and
//! `stack.yml` (the stack file checked, and an AWS stack's plan summarised, on every pull
//! request). The project's own `.github/workflows/deploy.yml` is this template rendered for
//! `stacks/ec2-single.toml` from source, and a test keeps the two identical.
//!
//! The templates use `[[ … ]]` and `[% … %]` so that GitHub's own `${{ … }}` expressions stay
//! literal text.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::secret::SecretRef;
use crate::stack::{Stack, Target};

const DEPLOY_TEMPLATE: &str = include_str!("../templates/github/deploy.yml.j2");
const CHECK_TEMPLATE: &str = include_str!("../templates/github/check.yml.j2");
const INSTALL_TEMPLATE: &str = include_str!("../templates/github/install.yml.j2");

/// Where the workflows download release binaries of `fullslack` from (`release.yml` publishes
/// `fullslack-vVERSION-linux-x86_64` and `SHA256SUMS-linux-x86_64` there).
pub const RELEASES: &str = "https://github.com/fullslack/fullslack/releases/download";

/// What the workflows are rendered for.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowParams {
    /// The stack file, relative to the repository's root.
    pub stack: String,
    /// The stack's name.
    pub stack_name: String,
    /// Build `fullslack` and the chat server image from this workspace (the project's own
    /// repository) instead of installing the released `fullslack` and deploying the stack's
    /// image.
    pub source: bool,
    /// The `fullslack` release the workflows install.
    pub version: String,
    /// [`RELEASES`].
    pub releases: String,
    /// Hosts are reached over SSH (ssh and ec2 targets).
    pub ssh: bool,
    /// The stack has AWS resources: deploy plans and applies them first (`--yes`).
    pub aws_target: bool,
    /// The image goes to a registry (pushed after the build when building from source).
    pub registry: bool,
    /// Environment variables the stack reads secrets from: each one a repository secret,
    /// passed to the deploy step only.
    pub secrets: Vec<String>,
}

impl WorkflowParams {
    /// The parameters of `stack` (at `stack_path` in the repository).
    pub fn of(stack: &Stack, stack_path: &str, source: bool) -> Self {
        let mut secrets: BTreeSet<String> = stack
            .secrets
            .values()
            .chain(stack.image.password.iter())
            .filter_map(|r| match r {
                SecretRef::Env(name) => Some(name.clone()),
                SecretRef::Ssm(_) => None,
            })
            .collect();
        secrets.insert(crate::health::PROBE_PASSWORD_ENV.into());
        Self {
            stack: stack_path.to_string(),
            stack_name: stack.name.clone(),
            source,
            version: env!("CARGO_PKG_VERSION").to_string(),
            releases: RELEASES.to_string(),
            ssh: matches!(stack.target, Target::Ssh | Target::Ec2),
            aws_target: matches!(stack.target, Target::Ec2 | Target::Ecs),
            registry: stack.image.registry.is_some(),
            secrets: secrets.into_iter().collect(),
        }
    }
}

/// The rendered workflows: `(file name under .github/workflows/, contents)`.
pub fn render(p: &WorkflowParams) -> Result<Vec<(&'static str, String)>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .block_delimiters("[%", "%]")
            .variable_delimiters("[[", "]]")
            .comment_delimiters("[#", "#]")
            .build()?,
    );
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.add_template("deploy.yml.j2", DEPLOY_TEMPLATE)?;
    env.add_template("check.yml.j2", CHECK_TEMPLATE)?;
    env.add_template("install.yml.j2", INSTALL_TEMPLATE)?;
    let deploy = env.get_template("deploy.yml.j2")?.render(p)?;
    let check = env.get_template("check.yml.j2")?.render(p)?;
    Ok(vec![("deploy.yml", deploy), ("stack.yml", check)])
}
