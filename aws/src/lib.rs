//! `fullslack-aws`: everything of `fullslack` that talks to AWS, through the official SDK
//! crates. Only the CLI depends on it; the chat server never compiles it.
//!
//! Module map. Imports run one way, from the top of this list down to its foundations:
//! `orchestrate` → the families (`ec2::*`, `ecs::*`, `ecr`; ECS applies its security groups
//! through `ec2::security_group`) → `family`, `network`, `plan` → `cost` → `resource`,
//! `spec`, `config`, `error`; nothing lower imports anything higher.
//!
//! - [`orchestrate`]: the entry points the CLI calls ([`read_actual`], [`plan()`],
//!   [`plan_destroy`], [`apply()`]), which hand each resource to its family.
//! - [`config`]: [`Aws`], the SDK configuration (region from the stack, standard credential
//!   chain, `AWS_ENDPOINT_URL`, an HTTPS client on rustls + ring) and the service clients.
//! - [`error`]: [`AwsError`]; SDK errors classified (no credentials, bad credentials, access
//!   denied, region, limits, …), each with a hint that says what to do.
//! - [`spec`]: [`StackSpec`], the desired state as the CLI hands it over, and [`Lookup`], the
//!   names a stack's resources are read back by.
//! - [`resource`]: resources as data ([`Kind`], [`Resource`], attribute values) and which
//!   attribute changes apply makes in place and which force a replacement (and why).
//! - [`plan`]: the diff into a [`Plan`] (saved as JSON), the stale-plan check and the readable
//!   rendering.
//! - [`cost`]: the monthly cost estimate from a small price table.
//! - [`family`]: what every resource family shares: the apply step every family runs in, tags
//!   and filters, retries, hashing.
//! - [`network`]: VPC and subnet lookups both targets need.
//! - [`ec2`]: security group, key pair, instance, Elastic IP (one module each).
//! - [`ecs`]: cluster, task definition, target group, load balancer (with listeners), service
//!   (one module each), the wait for a stable service, and revisions read as releases (what
//!   `deploy`, `rollback`, `releases` and `status` show of an ECS stack).
//! - [`ecr`]: the stack's repository and fresh registry credentials ([`ecr::RegistryAuth`]).
//! - [`hosts`]: the running instances of an `ec2` stack, found by its tags (what `lock`,
//!   `doctor` and deploys connect to).
//! - [`ssm`]: SecureString secrets under `/<stack>/<NAME>`.
//! - [`lock`]: the per-stack lock (`/fullslack/<stack>/lock` in SSM, create-only) that
//!   `apply`, `destroy` and deploys take: acquire (with a wait), release, break.
//! - [`secret`]: [`SecretString`] (the workspace's one secret string, `secrecy`'s), redacted Debug.
//! - [`sdk`]: the SDK crates re-exported, for callers that need their types (tests).
//!
//! Everything created carries the tags `fullslack:stack=<stack>` and
//! `fullslack:resource=<logical name>`; what exists is read back by those tags.

pub mod config;
pub mod cost;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod error;
pub mod family;
pub mod hosts;
pub mod lock;
pub mod network;
pub mod orchestrate;
pub mod plan;
pub mod resource;
pub mod secret;
pub mod spec;
pub mod ssm;

/// The SDK crates, for callers that need their types (tests inspecting what was created).
pub mod sdk {
    pub use aws_sdk_ec2 as ec2;
    pub use aws_sdk_ecr as ecr;
    pub use aws_sdk_ecs as ecs;
    pub use aws_sdk_elasticloadbalancingv2 as elbv2;
    pub use aws_sdk_ssm as ssm;
}

pub use config::Aws;
pub use error::{AwsError, ErrorKind};
pub use family::{TAG_RESOURCE, TAG_STACK};
pub use orchestrate::{apply, plan, plan_destroy, read_actual};
pub use plan::{Action, Change, Plan};
pub use resource::{Kind, Resource};
pub use secret::{ExposeSecret, SecretString};
pub use spec::{Ec2Spec, EcsSpec, Lookup, StackSpec, TargetSpec};
