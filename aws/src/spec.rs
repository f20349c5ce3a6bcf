//! What a stack asks for, as this crate's input. The CLI builds it from its stack file model
//! (this crate does not depend on the CLI), after validation and after resolving things only
//! the CLI knows (the public key file).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One stack's desired AWS state.
#[derive(Debug, Clone, PartialEq)]
pub struct StackSpec {
    /// Stack name: the value of the `fullslack:stack` tag on everything.
    pub name: String,
    /// Region.
    pub region: String,
    /// ECR repository the stack owns (when its image registry is `ecr`).
    pub ecr_repository: Option<String>,
    /// Seconds to wait for instances to run / services to become stable.
    pub wait_timeout_secs: u64,
    /// EC2 or ECS specifics.
    pub target: TargetSpec,
}

/// Where the stack runs.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSpec {
    /// Instances with Docker and Nginx.
    Ec2(Ec2Spec),
    /// A Fargate service behind an ALB.
    Ecs(EcsSpec),
}

impl TargetSpec {
    /// `ec2` or `ecs`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetSpec::Ec2(_) => "ec2",
            TargetSpec::Ecs(_) => "ecs",
        }
    }
}

/// EC2 instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Spec {
    /// Instance type.
    pub instance_type: String,
    /// Number of instances.
    pub count: u32,
    /// `al2023`, `debian` (resolved to the newest image by name) or an `ami-…` id.
    pub ami: String,
    /// Key pair name.
    pub key_name: Option<String>,
    /// OpenSSH public key to import as `key_name` (None: the key pair must already exist).
    pub public_key: Option<String>,
    /// Root volume size, GiB.
    pub volume_gb: u32,
    /// Subnet (None: the default VPC's default subnet).
    pub subnet_id: Option<String>,
    /// CIDR allowed to reach port 22; None: no SSH ingress at all (the plan says so). Never
    /// detected from who runs the plan: the plan is a function of the stack file and AWS.
    pub ssh_cidr: Option<String>,
}

/// ECS Fargate service behind an ALB.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsSpec {
    /// Cluster name (`fullslack-<stack>` unless the stack names one). A cluster that exists
    /// and is not the stack's is used, never changed or deleted.
    pub cluster: String,
    /// Task CPU units.
    pub cpu: u32,
    /// Task memory, MiB.
    pub memory: u32,
    /// Subnets of the tasks and the ALB (at least two zones for an ALB).
    pub subnets: Vec<String>,
    /// More security groups of the tasks (the ALB and the tasks also get groups of their own).
    pub security_groups: Vec<String>,
    /// ACM certificate of the HTTPS listener (None: HTTP only).
    pub certificate_arn: Option<String>,
    /// Task execution role (pulls from ECR, reads SSM secrets, writes logs).
    pub execution_role_arn: Option<String>,
    /// Image repository (`fullslack/chat`) or a full reference for other registries.
    pub image: String,
    /// Image tag.
    pub tag: String,
    /// Tasks to run.
    pub desired_count: u32,
    /// Container port.
    pub port: u16,
    /// Readiness path for the ALB and the container health check.
    pub health_path: String,
    /// Plain environment variables.
    pub env: BTreeMap<String, String>,
    /// Environment variable → SSM parameter name.
    pub secrets: BTreeMap<String, String>,
}

/// Names needed to read a stack's resources that tags alone cannot find (ECR and ECS look
/// these up by name, then check the tag). Saved in the plan so `apply PLAN` needs no stack file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// ECR repository name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecr_repository: Option<String>,
    /// ECS cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl Lookup {
    /// The names a stack's resources are looked up by.
    pub fn of(spec: &StackSpec) -> Lookup {
        Lookup {
            ecr_repository: spec.ecr_repository.clone(),
            cluster: match &spec.target {
                TargetSpec::Ecs(e) => Some(e.cluster.clone()),
                TargetSpec::Ec2(_) => None,
            },
        }
    }
}
