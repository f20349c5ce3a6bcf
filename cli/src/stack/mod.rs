//! Stack files: parse, locate errors at a line and key, validate, and write the `init` template.

mod model;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

pub use model::*;

use crate::secret::SecretRef;

/// The commented stack file `fullslack init` writes.
pub const INIT_TEMPLATE: &str = include_str!("../../../templates/stack.init.toml");

/// One problem in a stack file, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// Dotted key path (`redis.url`, `hosts[1].address`), empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Errors of the stack boundary.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The file could not be read.
    #[error("cannot read stack file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file has problems.
    #[error("{}", render_diagnostics(path, diagnostics))]
    Invalid {
        /// File.
        path: PathBuf,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
}

impl StackError {
    /// A hint for the user.
    pub fn hint(&self) -> String {
        match self {
            StackError::Read { .. } => {
                "check the path, or create a stack file with `fullslack init`".into()
            }
            StackError::Invalid { .. } => {
                "fix the keys listed above; `fullslack init` writes a commented example".into()
            }
        }
    }
}

fn render_diagnostics(path: &Path, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let key = if d.key.is_empty() {
            String::new()
        } else {
            format!(" `{}`", d.key)
        };
        out.push_str(&format!(
            "{}:{}:{}:{key} {}\n  fix: {}",
            path.display(),
            d.line,
            d.column,
            d.message,
            d.hint
        ));
    }
    out
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` {} (fix: {})",
            self.line, self.column, self.key, self.message, self.hint
        )
    }
}

/// Reads and validates a stack file.
pub fn load(path: &Path) -> Result<Stack, StackError> {
    let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|diagnostics| StackError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    })
}

/// Parses and validates stack text.
pub fn parse(text: &str) -> Result<Stack, Vec<Diagnostic>> {
    let stack: Stack = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => return Err(vec![from_toml_error(text, &e)]),
    };
    let problems = validate(&stack);
    if problems.is_empty() {
        return Ok(stack);
    }
    Err(problems
        .into_iter()
        .map(|p| {
            let (line, column) = locate(text, &p.key);
            Diagnostic {
                line,
                column,
                key: p.key,
                message: p.message,
                hint: p.hint,
            }
        })
        .collect())
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn from_toml_error(text: &str, e: &toml::de::Error) -> Diagnostic {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let message = e.message().trim().to_string();
    let key = e
        .span()
        .map(|s| text[s.clone()].trim().trim_matches('"').to_string())
        .filter(|k| !k.contains('\n') && k.len() < 64)
        .unwrap_or_default();
    let hint = if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = message
            .split("expected ")
            .nth(1)
            .map(|s| {
                s.split('`')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 1)
                    .map(|(_, w)| w)
                    .collect()
            })
            .unwrap_or_default();
        match closest(unknown, &expected) {
            Some(best) => format!("unknown key: did you mean `{best}`? Otherwise remove it"),
            None if expected.is_empty() => "remove this key: it is not part of this table".into(),
            None => format!(
                "remove this key; this table accepts: {}",
                expected.join(", ")
            ),
        }
    } else if message.starts_with("missing field") {
        "add the missing key to this table (see `fullslack init` for an example)".into()
    } else if message.starts_with("unknown variant") {
        "use one of the values listed above".into()
    } else if message.starts_with("invalid type") {
        "change the value to the type the key expects".into()
    } else {
        "fix the TOML syntax at this position".into()
    };
    Diagnostic {
        line,
        column,
        key,
        message,
        hint,
    }
}

/// The candidate nearest to `word` by edit distance, if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Finds the line and column of a dotted key path (`a.b`, `hosts[1].address`) in the file,
/// falling back to the nearest parent that exists.
pub fn locate(text: &str, key: &str) -> (usize, usize) {
    use toml::de::{DeTable, DeValue};
    let Ok(root) = DeTable::parse(text) else {
        return (1, 1);
    };
    let mut best = 0usize;
    let mut table = Some(root.get_ref());
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(t) = table else { break };
        let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        best = k.span().start;
        value = Some(v);
        if let Some(i) = index {
            match v.get_ref().as_array().and_then(|a| a.get(i)) {
                Some(item) => {
                    best = item.span().start;
                    value = Some(item);
                }
                None => break,
            }
        }
        table = value.and_then(|v| v.get_ref().as_table());
    }
    let _ = value;
    line_col(text, best)
}

struct Problem {
    key: String,
    message: String,
    hint: String,
}

fn problem(key: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
        hint: hint.into(),
    }
}

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

fn validate(s: &Stack) -> Vec<Problem> {
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
        if !valid_domain(d) {
            p.push(problem(
                format!("domains[{i}]"),
                format!("`{d}` is not a valid domain name"),
                "write a fully qualified name like chat.example.com, without scheme or path",
            ));
        }
    }
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
        Target::Ec2 => {
            if s.ec2.is_none() {
                p.push(problem(
                    "target",
                    "target `ec2` needs an [ec2] table",
                    "add [ec2] with region = \"us-east-1\" (see stacks/ec2-single.toml)",
                ));
            }
        }
        Target::Ecs => {
            match &s.ecs {
                None => p.push(problem(
                    "target",
                    "target `ecs` needs an [ecs] table",
                    "add [ecs] with region, cluster and subnets (see stacks/ecs-fargate.toml)",
                )),
                Some(ecs) => {
                    if ecs.subnets.is_empty() {
                        p.push(problem(
                            "ecs.subnets",
                            "an ECS service behind an ALB needs subnets",
                            "list at least two subnets in different availability zones",
                        ));
                    }
                    if !matches!(ecs.cpu, 256 | 512 | 1024 | 2048 | 4096) {
                        p.push(problem(
                            "ecs.cpu",
                            format!("{} is not a Fargate CPU size", ecs.cpu),
                            "use 256, 512, 1024, 2048 or 4096",
                        ));
                    }
                }
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
        }
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
