//! The resource model: what one thing in AWS the stack owns looks like as data ([`Resource`],
//! named by [`Kind`] and a logical name, described by compared attributes of [`Value`]s), and
//! the table of which attribute changes apply can make in place ([`Kind::carry`]). The plan,
//! the cost estimate and every resource family build on it; it depends on nothing else of the
//! crate, so none of them import each other through it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Kinds of resources, in creation order (deletes run in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// ECR repository.
    EcrRepository,
    /// EC2 security group.
    SecurityGroup,
    /// EC2 key pair (imported public key).
    KeyPair,
    /// EC2 instance.
    Instance,
    /// Elastic IP, associated with an instance.
    ElasticIp,
    /// ECS cluster.
    EcsCluster,
    /// ECS task definition family (a change registers a new revision).
    TaskDefinition,
    /// ALB target group.
    TargetGroup,
    /// Application load balancer.
    LoadBalancer,
    /// ALB listener.
    Listener,
    /// ECS service.
    EcsService,
}

impl Kind {
    /// Name shown in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EcrRepository => "ecr_repository",
            Kind::SecurityGroup => "security_group",
            Kind::KeyPair => "key_pair",
            Kind::Instance => "instance",
            Kind::ElasticIp => "elastic_ip",
            Kind::EcsCluster => "ecs_cluster",
            Kind::TaskDefinition => "task_definition",
            Kind::TargetGroup => "target_group",
            Kind::LoadBalancer => "load_balancer",
            Kind::Listener => "listener",
            Kind::EcsService => "ecs_service",
        }
    }

    /// How a change of `attr` (from `old` to `new`) can be carried out. Apply implements every
    /// in-place change listed here and a replacement for every kind, so whatever the diff plans
    /// is something apply can do (an attribute not listed forces replacement, never an
    /// "update" apply has no code for).
    pub fn carry(self, attr: &str, old: Option<&Value>, new: &Value) -> Carry {
        use Carry::{InPlace, Replace};
        let text = |v: Option<&Value>| match v {
            Some(Value::One(s)) => s.clone(),
            _ => String::new(),
        };
        match (self, attr) {
            (Kind::EcrRepository, "tag_mutability") => InPlace,
            (Kind::SecurityGroup, "ingress") => InPlace,
            (Kind::SecurityGroup, "vpc") => {
                Replace("a security group cannot move to another VPC".into())
            }
            (Kind::KeyPair, "public_key_sha256") => {
                Replace("EC2 cannot change the key material of a key pair".into())
            }
            (Kind::Instance, "security_group" | "metadata_tokens") => InPlace,
            (Kind::Instance, "instance_type") => {
                let (o, n) = (text(old), text(Some(new)));
                if is_arm(&o) == is_arm(&n) {
                    InPlace
                } else {
                    Replace(format!(
                        "{o} and {n} have different CPU architectures, which need different images"
                    ))
                }
            }
            (Kind::Instance, "volume_gb") => {
                let o: u64 = text(old).parse().unwrap_or(0);
                let n: u64 = text(Some(new)).parse().unwrap_or(0);
                if n >= o {
                    InPlace
                } else {
                    Replace("an EBS volume cannot shrink".into())
                }
            }
            (Kind::Instance, "image") => Replace("the image is chosen only at launch".into()),
            (Kind::Instance, "key_name") => Replace("the key pair is set only at launch".into()),
            (Kind::Instance, "user_data_sha256") => {
                Replace("user data runs only on an instance's first boot".into())
            }
            (Kind::Instance, "subnet") => {
                Replace("an instance cannot move to another subnet".into())
            }
            (Kind::ElasticIp, "instance") => InPlace,
            (Kind::TaskDefinition, _) => InPlace,
            (Kind::TargetGroup, "health_path" | "matcher") => InPlace,
            (Kind::LoadBalancer, "security_groups" | "subnets") => InPlace,
            (Kind::Listener, "action" | "certificate") => InPlace,
            (
                Kind::EcsService,
                "desired_count" | "task_definition" | "subnets" | "security_groups"
                | "circuit_breaker",
            ) => InPlace,
            (_, a) => Replace(format!("`{a}` cannot be changed in place")),
        }
    }
}

/// How one changed attribute is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carry {
    /// Changed on the existing resource.
    InPlace,
    /// Needs a new resource; the reason says why (shown as "forces replacement").
    Replace(String),
}

/// An attribute value: one string or a set of strings (rules, subnets), compared as a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A single value.
    One(String),
    /// An unordered set, kept sorted.
    Set(Vec<String>),
}

impl Value {
    /// A set from any strings (sorted, deduplicated).
    pub fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        let s: BTreeSet<String> = items.into_iter().map(Into::into).collect();
        Value::Set(s.into_iter().collect())
    }

    /// The value as plans show it (`(none)` when empty).
    pub(crate) fn render(&self) -> String {
        match self {
            Value::One(s) if s.is_empty() => "(none)".into(),
            Value::One(s) => s.clone(),
            Value::Set(v) if v.is_empty() => "(none)".into(),
            Value::Set(v) => v.join(", "),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::One(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::One(s)
    }
}

/// One resource, desired or actual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// What it is.
    pub kind: Kind,
    /// Logical name, unique per kind within the stack.
    pub name: String,
    /// AWS id (ARN, `sg-…`, `i-…`), once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Compared attributes.
    pub attrs: BTreeMap<String, Value>,
    /// Creation inputs and observations that are not compared (user data text, public key,
    /// public IP). Never secret values: secrets are referenced by ARN.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl Resource {
    /// A resource with no id yet.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Resource {
            kind,
            name: name.into(),
            id: None,
            attrs: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Adds a compared attribute.
    pub fn attr(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.attrs.insert(k.to_string(), v.into());
        self
    }

    /// Adds an uncompared input or observation.
    pub fn extra(mut self, k: &str, v: impl Into<String>) -> Self {
        self.extra.insert(k.to_string(), v.into());
        self
    }

    /// A text attribute (empty if absent or a set).
    pub fn text(&self, k: &str) -> &str {
        match self.attrs.get(k) {
            Some(Value::One(s)) => s,
            _ => "",
        }
    }

    /// A set attribute (empty if absent).
    pub fn list(&self, k: &str) -> Vec<String> {
        match self.attrs.get(k) {
            Some(Value::Set(v)) => v.clone(),
            Some(Value::One(s)) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// An uncompared input (empty if absent).
    pub fn input(&self, k: &str) -> &str {
        self.extra.get(k).map(String::as_str).unwrap_or("")
    }

    /// `kind name (id)`.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("{} {} ({id})", self.kind.as_str(), self.name),
            None => format!("{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// Graviton instance families end their family name in `g` (t4g, m7g, c7gn…). Here because
/// the carry table decides on it (an architecture change needs another image) as well as the
/// image lookup of the instance family.
pub(crate) fn is_arm(instance_type: &str) -> bool {
    instance_type
        .split('.')
        .next()
        .is_some_and(|f| f.trim_end_matches(['n', 'd', 'e']).ends_with('g'))
}
