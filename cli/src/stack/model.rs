//! The stack file's shape. Every table refuses unknown keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

/// One deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Stack name: names containers, upstreams, lock files. `a-z 0-9 -`, 1–32 characters.
    pub name: String,
    /// Public domains served by this stack; the first one is the primary.
    pub domains: Vec<String>,
    /// Where the stack runs.
    pub target: Target,
    /// Existing hosts (target `ssh`; optional for `ec2` once instances exist).
    #[serde(default)]
    pub hosts: Vec<Host>,
    /// SSH settings shared by every host.
    #[serde(default)]
    pub ssh: SshSettings,
    /// EC2 instance settings (target `ec2`).
    pub ec2: Option<Ec2>,
    /// ECS Fargate settings (target `ecs`).
    pub ecs: Option<Ecs>,
    /// Container image and registry.
    pub image: Image,
    /// Chat node settings.
    #[serde(default)]
    pub app: App,
    /// Redis (fan-out between nodes).
    #[serde(default)]
    pub redis: Service,
    /// MongoDB (the store for more than one node).
    #[serde(default)]
    pub mongodb: Service,
    /// TLS certificates through ACME.
    #[serde(default)]
    pub tls: Tls,
    /// Secrets by reference: name → where to read it. Passed to the container as env vars.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Health gate for deploys.
    #[serde(default)]
    pub health: Health,
}

/// Deployment target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// EC2 instances created by `fullslack`.
    Ec2,
    /// An ECS Fargate service behind an ALB.
    Ecs,
    /// Existing hosts reached over SSH.
    Ssh,
    /// This machine (Docker Engine on localhost).
    Local,
}

impl Target {
    /// The name used in the stack file.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Ec2 => "ec2",
            Target::Ecs => "ecs",
            Target::Ssh => "ssh",
            Target::Local => "local",
        }
    }
}

/// The target with its own settings, as the code should read them: `Ec2` and `Ecs` carry
/// their table. The file keeps `target = "…"` and the `[ec2]`/`[ecs]` tables apart (the stack
/// file format users write and every example uses); [`Stack::target_settings`] joins them.
/// `None` in `Ec2`/`Ecs`: the table is missing (validation reports it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetSettings<'a> {
    /// `target = "ec2"` and its `[ec2]` table.
    Ec2(Option<&'a Ec2>),
    /// `target = "ecs"` and its `[ecs]` table.
    Ecs(Option<&'a Ecs>),
    /// `target = "ssh"`: the `[[hosts]]` and `[ssh]` of the stack.
    Ssh,
    /// `target = "local"`.
    Local,
}

impl Stack {
    /// The target with the settings of its own table (a table of another target is ignored).
    pub fn target_settings(&self) -> TargetSettings<'_> {
        match self.target {
            Target::Ec2 => TargetSettings::Ec2(self.ec2.as_ref()),
            Target::Ecs => TargetSettings::Ecs(self.ecs.as_ref()),
            Target::Ssh => TargetSettings::Ssh,
            Target::Local => TargetSettings::Local,
        }
    }

    /// The AWS region of an `ec2` or `ecs` stack (`None`: not an AWS target, or no table).
    pub fn aws_region(&self) -> Option<&str> {
        match self.target_settings() {
            TargetSettings::Ec2(Some(e)) => Some(&e.region),
            TargetSettings::Ecs(Some(e)) => Some(&e.region),
            _ => None,
        }
    }
}

/// An existing host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Host name or IPv4 address used for SSH.
    pub address: String,
    /// The host's public IPv4 address, if `address` is a name (what A records must point at).
    pub ipv4: Option<String>,
    /// The host's public IPv6 address, if it has one (what AAAA records must point at).
    pub ipv6: Option<String>,
    /// Roles on this host: `chat`, `redis`, `mongodb`, `proxy`. Default: all.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Override of `ssh.user` for this host.
    pub user: Option<String>,
    /// Override of `ssh.port` for this host.
    pub port: Option<u16>,
    /// Short name of the host (`web2`). When given, the host's containers, data volume,
    /// state directory and default Nginx site are named `<stack>-<name>`, and `{host}` in
    /// the `--nginx-*` and `--state-dir` paths of a deploy becomes it: several hosts that
    /// share one machine (one Docker Engine) stay apart.
    pub name: Option<String>,
    /// Override of `app.host_port` on this host (blue; green is 100 above).
    pub app_port: Option<u16>,
    /// Override of the port Nginx listens on for plain HTTP on this host (`--http-port`).
    pub http_port: Option<u16>,
}

/// SSH settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshSettings {
    /// Remote user.
    pub user: String,
    /// Remote port.
    pub port: u16,
    /// Private key file (default: ssh's own choice).
    pub identity_file: Option<String>,
    /// Known-hosts file (default: ~/.ssh/known_hosts).
    pub known_hosts: Option<String>,
    /// An ssh_config file (`ssh -F`), e.g. to reach hosts through a bastion or under another
    /// name (default: ssh's own).
    pub config_file: Option<String>,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            user: "root".into(),
            port: 22,
            identity_file: None,
            known_hosts: None,
            config_file: None,
        }
    }
}

/// EC2 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2 {
    /// AWS region.
    pub region: String,
    /// Instance type.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Number of chat instances.
    #[serde(default = "one")]
    pub count: u32,
    /// AMI id or alias (`al2023`).
    #[serde(default = "default_ami")]
    pub ami: String,
    /// EC2 key pair name. Absent with `public_key_file`: `fullslack-<stack>`.
    pub key_name: Option<String>,
    /// Root volume size in GiB.
    #[serde(default = "default_volume")]
    pub volume_gb: u32,
    /// Subnet id (default VPC when absent).
    pub subnet_id: Option<String>,
    /// OpenSSH public key file imported as the key pair `key_name` (`~` expands). Absent: the
    /// key pair must already exist in the region.
    pub public_key_file: Option<String>,
    /// Who may reach port 22 (CIDR). Absent: nobody (port 22 stays closed; the plan says so).
    /// `0.0.0.0/0` is refused unless `--allow-ssh-from-anywhere` is given.
    pub ssh_cidr: Option<String>,
}

/// ECS Fargate settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ecs {
    /// AWS region.
    pub region: String,
    /// Cluster name. Absent: `fullslack-<stack>`, the stack's own. A cluster that exists and
    /// is not the stack's is used but never changed or deleted.
    pub cluster: Option<String>,
    /// Task CPU units (256, 512, 1024, 2048, 4096).
    #[serde(default = "default_cpu")]
    pub cpu: u32,
    /// Task memory in MiB.
    #[serde(default = "default_memory")]
    pub memory: u32,
    /// Subnets for the tasks and the load balancer.
    pub subnets: Vec<String>,
    /// More security groups for the tasks (besides the stack's own, which lets the ALB in).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// ACM certificate ARN for the ALB's HTTPS listener (absent: HTTP only).
    pub certificate_arn: Option<String>,
    /// Task execution role ARN: pulls from ECR, reads the SSM secrets, writes logs. Needed when
    /// the stack has secrets.
    pub execution_role_arn: Option<String>,
}

/// Image and registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Repository name, e.g. `fullslack/chat`.
    pub name: String,
    /// Tag to deploy (default `latest`; deploys pin a digest).
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Registry host (`ecr` for the account's ECR, or a host[:port]); absent: Docker Hub.
    pub registry: Option<String>,
    /// Registry user name.
    pub username: Option<String>,
    /// Registry password, by reference.
    pub password: Option<SecretRef>,
}

impl Image {
    /// `registry/name:tag`.
    pub fn reference(&self) -> String {
        match &self.registry {
            Some(r) if r != "ecr" => format!("{r}/{}:{}", self.name, self.tag),
            _ => format!("{}:{}", self.name, self.tag),
        }
    }
}

/// Chat node settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct App {
    /// Chat containers per host (or ECS tasks).
    pub replicas: u32,
    /// Port the server listens on inside the container.
    pub port: u16,
    /// First host port used for blue/green containers (blue = base, green = base + 100).
    pub host_port: u16,
    /// Extra plain environment variables.
    pub env: BTreeMap<String, String>,
}

impl Default for App {
    fn default() -> Self {
        Self {
            replicas: 1,
            port: 8080,
            host_port: 8100,
            env: BTreeMap::new(),
        }
    }
}

/// How a backing service (Redis, MongoDB) is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// Not used (one node on the embedded store).
    #[default]
    None,
    /// A container run by the stack.
    Managed,
    /// An existing service, reached through `url`.
    External,
}

/// Redis or MongoDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    /// `none`, `managed` or `external`.
    pub mode: ServiceMode,
    /// Connection URL for `external`, by reference (it carries credentials).
    pub url: Option<SecretRef>,
    /// Image for `managed`.
    pub image: Option<String>,
    /// Host address that runs the managed service (default: the first host).
    pub host: Option<String>,
}

/// ACME directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AcmeDirectory {
    /// Let's Encrypt staging (untrusted certificates, generous rate limits).
    #[default]
    Staging,
    /// Let's Encrypt production.
    Production,
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// Serve HTTPS (Nginx terminates TLS). Off only for `local`.
    pub enabled: bool,
    /// ACME account e-mail.
    pub acme_email: Option<String>,
    /// `staging` or `production`.
    pub directory: AcmeDirectory,
    /// Custom ACME directory URL (overrides `directory`; e.g. a private CA).
    pub directory_url: Option<String>,
    /// CA domain that CAA records must allow.
    pub ca_domain: String,
    /// PEM file of the CA that signs the ACME directory's own HTTPS certificate, for a private
    /// ACME server (pebble in tests); absent: the system's roots.
    pub directory_ca_file: Option<String>,
    /// Renew when fewer than this many days are left. Absent: when the CA's renewal
    /// information (ARI) says so, else when a third of the lifetime is left.
    pub renew_days_before: Option<u32>,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            enabled: true,
            acme_email: None,
            directory: AcmeDirectory::Staging,
            directory_url: None,
            ca_domain: "letsencrypt.org".into(),
            directory_ca_file: None,
            renew_days_before: None,
        }
    }
}

/// Health gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Readiness path.
    pub path: String,
    /// Seconds between probes.
    pub interval_secs: u64,
    /// Seconds before one probe fails.
    pub timeout_secs: u64,
    /// Probes before a new release is declared unhealthy.
    pub retries: u32,
    /// Also run a full WebSocket round trip.
    pub websocket: bool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            path: "/readyz".into(),
            interval_secs: 2,
            timeout_secs: 5,
            retries: 15,
            websocket: true,
        }
    }
}

fn default_instance_type() -> String {
    "t3.small".into()
}
fn default_ami() -> String {
    "al2023".into()
}
fn default_tag() -> String {
    "latest".into()
}
fn one() -> u32 {
    1
}
fn default_volume() -> u32 {
    20
}
fn default_cpu() -> u32 {
    512
}
fn default_memory() -> u32 {
    1024
}
