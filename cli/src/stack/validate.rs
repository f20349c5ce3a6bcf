//! The rules a parsed stack must meet beyond its shape: each returns [`Problem`]s (a key, what
//! is wrong, the fix) that become line/column diagnostics. Also the warnings `stack check`
//! prints for a valid stack.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::diagnostics::{problem, Problem};
use super::env::env_problems;
use super::{aws_names, AcmeDirectory, Ecs, Image, ServiceMode, Stack, Target};
use crate::secret::SecretRef;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Every rule a parsed stack must meet, in the order the problems are reported.
pub(super) fn validate(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    p.extend(name_and_domain_problems(s));
    p.extend(target_problems(s));
    p.extend(host_problems(s));
    p.extend(service_problems(s));
    p.extend(tls_problems(s));
    p.extend(secret_name_problems(s));
    p.extend(app_problems(s));
    p.extend(image_problems(&s.image));
    p.extend(env_problems(s));
    if !s.health.path.starts_with('/') {
        p.push(problem(
            "health.path",
            "health path must start with /",
            "use /readyz",
        ));
    }
    if s.health.timeout_secs == 0 {
        p.push(problem(
            "health.timeout_secs",
            "a timeout of 0 fails every probe",
            "use a few seconds, e.g. 5",
        ));
    }
    p
}

/// The stack name, and domains that are names (not addresses).
fn name_and_domain_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    if !valid_name(&s.name) {
        p.push(problem(
            "name",
            format!("`{}` is not a valid stack name", s.name),
            "use 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ));
    }
    if s.domains.is_empty() {
        p.push(problem(
            "domains",
            "no domain given",
            "list at least one domain, e.g. domains = [\"chat.example.com\"]",
        ));
    }
    for (i, d) in s.domains.iter().enumerate() {
        if d.trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok()
            || d.rsplit('.')
                .next()
                .is_some_and(|tld| !tld.is_empty() && tld.chars().all(|c| c.is_ascii_digit()))
        {
            p.push(problem(
                format!("domains[{i}]"),
                format!("`{d}` is an IP address, not a domain name"),
                "list the DNS names clients use (certificates and Nginx's server_name need names); put the address in [[hosts]] ipv4/ipv6",
            ));
        } else if !valid_domain(d) {
            p.push(problem(
                format!("domains[{i}]"),
                format!("`{d}` is not a valid domain name"),
                "write a fully qualified name like chat.example.com, without scheme or path",
            ));
        }
    }
    p
}

/// What the target needs (hosts, its own table) and tables of another target.
fn target_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    match s.target {
        Target::Ssh => {
            if s.hosts.is_empty() {
                p.push(problem(
                    "target",
                    "target `ssh` needs at least one host",
                    "add a [[hosts]] table with address = \"203.0.113.10\"",
                ));
            }
        }
        Target::Ec2 => p.extend(ec2_problems(s)),
        Target::Ecs => p.extend(ecs_problems(s)),
        Target::Local => {}
    }
    if s.target != Target::Ec2 && s.ec2.is_some() {
        p.push(problem(
            "ec2",
            format!("[ec2] is set but target is `{}`", s.target.as_str()),
            "remove [ec2] or set target = \"ec2\"",
        ));
    }
    if s.target != Target::Ecs && s.ecs.is_some() {
        p.push(problem(
            "ecs",
            format!("[ecs] is set but target is `{}`", s.target.as_str()),
            "remove [ecs] or set target = \"ecs\"",
        ));
    }
    p
}

/// `target = "ec2"`: the [ec2] table, its count, region and instance type.
fn ec2_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    match &s.ec2 {
        None => p.push(problem(
            "target",
            "target `ec2` needs an [ec2] table",
            "add [ec2] with region = \"us-east-1\" (see stacks/ec2-single.toml)",
        )),
        Some(ec2) => {
            if ec2.count == 0 {
                p.push(problem(
                    "ec2.count",
                    "count = 0 would run no instance",
                    "set ec2.count to 1 or more (`fullslack destroy` removes a stack)",
                ));
            }
            if let Err((msg, fix)) = aws_names::check_region(&ec2.region) {
                p.push(problem("ec2.region", msg, fix));
            }
            if let Err((msg, fix)) = aws_names::check_instance_type(&ec2.instance_type) {
                p.push(problem("ec2.instance_type", msg, fix));
            }
        }
    }
    p
}

/// `target = "ecs"`: the [ecs] table, a registry to pull from, secrets the tasks can read.
fn ecs_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    match &s.ecs {
        None => p.push(problem(
            "target",
            "target `ecs` needs an [ecs] table",
            "add [ecs] with region, cluster and subnets (see stacks/ecs-fargate.toml)",
        )),
        Some(ecs) => p.extend(ecs_table_problems(s, ecs)),
    }
    if s.image.registry.is_none() {
        p.push(problem(
            "image",
            "ECS tasks pull from a registry, but none is set",
            "set image.registry = \"ecr\" to use the account's ECR",
        ));
    }
    for (k, v) in &s.secrets {
        if matches!(v, SecretRef::Env(_)) {
            p.push(problem(
                format!("secrets.{k}"),
                "ECS tasks cannot read the deployer's environment",
                format!("store it in SSM and write {k} = {{ ssm = \"/STACK/{k}\" }}"),
            ));
        }
    }
    p
}

/// The [ecs] table: region, subnets, a Fargate task size, the ALB's certificate, a store
/// that outlives a task.
fn ecs_table_problems(s: &Stack, ecs: &Ecs) -> Vec<Problem> {
    let mut p = Vec::new();
    if let Err((msg, fix)) = aws_names::check_region(&ecs.region) {
        p.push(problem("ecs.region", msg, fix));
    }
    if ecs.subnets.is_empty() {
        p.push(problem(
            "ecs.subnets",
            "an ECS service behind an ALB needs subnets",
            "list at least two subnets in different availability zones",
        ));
    }
    match fargate_memory(ecs.cpu) {
        None => p.push(problem(
            "ecs.cpu",
            format!("{} is not a Fargate CPU size", ecs.cpu),
            "use 256, 512, 1024, 2048 or 4096",
        )),
        Some(allowed) if !allowed.contains(&ecs.memory) => p.push(problem(
            "ecs.memory",
            format!(
                "Fargate has no task size with cpu = {} and memory = {} MiB",
                ecs.cpu, ecs.memory
            ),
            format!(
                "with cpu = {} use memory = {} (MiB)",
                ecs.cpu,
                describe_memory(&allowed)
            ),
        )),
        Some(_) => {}
    }
    if s.tls.enabled && ecs.certificate_arn.is_none() {
        p.push(problem(
            "tls.enabled",
            "TLS on ECS is terminated by the ALB, which needs an ACM certificate",
            "set ecs.certificate_arn = \"arn:aws:acm:REGION:ACCOUNT:certificate/ID\", or tls.enabled = false for a plain-HTTP service",
        ));
    }
    if s.mongodb.mode == ServiceMode::None {
        p.push(problem(
            "mongodb.mode",
            "Fargate tasks have no lasting disk: the embedded store would lose every message at each deploy, and each task would have its own",
            "set mongodb.mode = \"external\" with mongodb.url = { ssm = \"/STACK/mongodb-url\" }",
        ));
    }
    p
}

/// Host addresses and roles.
fn host_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    for (i, h) in s.hosts.iter().enumerate() {
        if h.address.trim().is_empty() || h.address.contains(char::is_whitespace) {
            p.push(problem(
                format!("hosts[{i}].address"),
                "host address is empty or contains spaces",
                "use a host name or an IP address",
            ));
        }
        if let Some(v4) = &h.ipv4 {
            if v4.parse::<Ipv4Addr>().is_err() {
                p.push(problem(
                    format!("hosts[{i}].ipv4"),
                    format!("`{v4}` is not an IPv4 address"),
                    "write four dotted numbers, e.g. 203.0.113.10",
                ));
            }
        }
        if let Some(v6) = &h.ipv6 {
            if v6.parse::<Ipv6Addr>().is_err() {
                p.push(problem(
                    format!("hosts[{i}].ipv6"),
                    format!("`{v6}` is not an IPv6 address"),
                    "write an IPv6 address like 2001:db8::10, or remove the key if the host has none",
                ));
            }
        }
        if let Some(n) = h.name.as_deref().filter(|n| !valid_name(n)) {
            p.push(problem(
                format!("hosts[{i}].name"),
                format!("`{n}` is not a host name fullslack can put in container names"),
                "use lowercase letters, digits and dashes (`web2`)",
            ));
        }
        for r in &h.roles {
            if !matches!(r.as_str(), "chat" | "redis" | "mongodb" | "proxy") {
                p.push(problem(
                    format!("hosts[{i}].roles"),
                    format!("unknown role `{r}`"),
                    "roles are chat, redis, mongodb and proxy",
                ));
            }
        }
    }
    p
}

/// Replicas, and the Redis/MongoDB a number of nodes needs.
fn service_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    if s.app.replicas == 0 {
        p.push(problem(
            "app.replicas",
            "replicas = 0 would serve nothing",
            "set replicas to 1 or more",
        ));
    }
    let nodes = s.app.replicas as usize
        * match s.target {
            Target::Ssh => s.hosts.len().max(1),
            Target::Ec2 => s.ec2.as_ref().map(|e| e.count as usize).unwrap_or(1),
            _ => 1,
        };
    if nodes > 1 && s.mongodb.mode == ServiceMode::None {
        p.push(problem(
            "mongodb",
            format!("{nodes} chat nodes cannot share the embedded store"),
            "set mongodb.mode = \"managed\" or \"external\" (more than one node needs MongoDB)",
        ));
    }
    if nodes > 1 && s.redis.mode == ServiceMode::None {
        p.push(problem(
            "redis",
            format!("{nodes} chat nodes need Redis for fan-out"),
            "set redis.mode = \"managed\" or \"external\"",
        ));
    }
    for (name, svc) in [("redis", &s.redis), ("mongodb", &s.mongodb)] {
        match svc.mode {
            ServiceMode::External if svc.url.is_none() => p.push(problem(
                format!("{name}.mode"),
                format!("external {name} without a url"),
                format!(
                    "add {name}.url = {{ env = \"{}_URL\" }}",
                    name.to_uppercase()
                ),
            )),
            ServiceMode::Managed | ServiceMode::None if svc.url.is_some() => p.push(problem(
                format!("{name}.url"),
                "url is only used with mode = \"external\"".to_string(),
                format!("set {name}.mode = \"external\" or remove the url"),
            )),
            ServiceMode::Managed if s.target == Target::Ecs => p.push(problem(
                format!("{name}.mode"),
                format!("a managed {name} cannot run on ECS Fargate"),
                "use mode = \"external\" (ElastiCache / DocumentDB / Atlas) with a url in SSM"
                    .to_string(),
            )),
            _ => {}
        }
    }
    p
}

/// ACME account e-mail and directory.
fn tls_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    if s.tls.enabled && s.target != Target::Ecs {
        match &s.tls.acme_email {
            None => p.push(problem(
                "tls",
                "TLS is enabled but no ACME account e-mail is set",
                "add tls.acme_email = \"ops@example.com\" (or tls.enabled = false for local)",
            )),
            Some(e) if !e.contains('@') => p.push(problem(
                "tls.acme_email",
                format!("`{e}` is not an e-mail address"),
                "write an address like ops@example.com",
            )),
            _ => {}
        }
    }
    if let Some(u) = &s.tls.directory_url {
        if !u.starts_with("https://") {
            p.push(problem(
                "tls.directory_url",
                "an ACME directory must be an https:// URL",
                "use the directory URL your CA documents, starting with https://",
            ));
        }
    }
    p
}

/// Secret names become container environment variable names.
fn secret_name_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    for k in s.secrets.keys() {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            p.push(problem(
                format!("secrets.{k}"),
                format!("`{k}` is not an environment variable name"),
                "secret names become container env vars: use A-Z, 0-9 and _",
            ));
        }
    }
    p
}

/// Fargate's task sizes: the memory (MiB) allowed with each CPU size.
fn fargate_memory(cpu: u32) -> Option<Vec<u32>> {
    let gib = |lo: u32, hi: u32| (lo..=hi).map(|g| g * 1024).collect::<Vec<_>>();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => gib(1, 4),
        1024 => gib(2, 8),
        2048 => gib(4, 16),
        4096 => gib(8, 30),
        _ => return None,
    })
}

fn describe_memory(allowed: &[u32]) -> String {
    match allowed {
        [a, b, c] if allowed.len() == 3 => format!("{a}, {b} or {c}"),
        [first, .., last] => format!("{first} to {last} in steps of 1024"),
        _ => String::new(),
    }
}

/// Ports: the container port, and the blue/green host ports Nginx proxies to.
fn app_problems(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    if s.app.port == 0 {
        p.push(problem(
            "app.port",
            "port 0 is not a port the server can be reached on",
            "use a port from 1 to 65535, e.g. 8080 (the image listens on 8080)",
        ));
    }
    if s.target == Target::Ecs {
        return p;
    }
    let replicas = s.app.replicas.max(1);
    // Blue uses host_port .. host_port + replicas, green the same range 100 higher.
    let highest = u32::from(s.app.host_port) + 100 + replicas - 1;
    if s.app.host_port == 0 || highest > u32::from(u16::MAX) {
        p.push(problem(
            "app.host_port",
            format!(
                "host_port = {} leaves no room for the green containers (host_port + 100 + replicas - 1 = {highest})",
                s.app.host_port
            ),
            format!(
                "use a host_port from 1024 to {}",
                u32::from(u16::MAX) - 100 - (replicas - 1)
            ),
        ));
        return p;
    }
    let ranges = [
        s.app.host_port..s.app.host_port + replicas as u16,
        s.app.host_port + 100..s.app.host_port + 100 + replicas as u16,
    ];
    for public in [80u16, 443] {
        if ranges.iter().any(|r| r.contains(&public)) {
            p.push(problem(
                "app.host_port",
                format!(
                    "host_port = {} puts a chat container on port {public}, where Nginx listens: Nginx would proxy to itself",
                    s.app.host_port
                ),
                "use a free port range above 1024, e.g. host_port = 8100 (green = host_port + 100)",
            ));
        }
    }
    p
}

/// Image names and tags the Docker Engine accepts.
fn image_problems(img: &Image) -> Vec<Problem> {
    let mut p = Vec::new();
    let reason = |e: crate::image::ImageError| match e {
        crate::image::ImageError::BadReference { reason, .. } => reason,
        other => other.to_string(),
    };
    let name = match img.registry.as_deref() {
        Some(r) if r != "ecr" => format!("{r}/{}", img.name),
        _ => img.name.clone(),
    };
    if let Err(e) = crate::image::tag::Repository::parse(&name) {
        p.push(problem(
            "image.name",
            format!("`{}` is not an image name Docker accepts: {}", img.name, reason(e)),
            "write lower-case path components like fullslack/chat (the registry goes in image.registry)",
        ));
    }
    if let Err(e) = crate::image::tag::check_tag(&img.tag) {
        p.push(problem(
            "image.tag",
            format!("`{}` is not a tag Docker accepts: {}", img.tag, reason(e)),
            "use letters, digits, `_`, `.` and `-` (at most 128), e.g. v1.4.2",
        ));
    }
    p
}

/// Remarks about a valid stack that do not stop it from working (`stack check` prints them).
pub fn warnings(s: &Stack) -> Vec<String> {
    let mut w = Vec::new();
    if s.tls.enabled
        && s.target != Target::Ecs
        && s.tls.directory_url.is_none()
        && s.tls.directory == AcmeDirectory::Staging
    {
        w.push(
            "tls.directory is `staging` (the default when it is not set): Let's Encrypt staging certificates are not trusted by browsers; set tls.directory = \"production\" once `fullslack doctor` passes".to_string(),
        );
    }
    w
}
