//! Stack files: parse, locate errors at a line and key, validate, and write the `init` template.

pub mod aws_names;
mod model;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

pub use model::*;

use crate::secret::SecretRef;

/// The commented stack file `fullslack init` writes.
pub const INIT_TEMPLATE: &str = include_str!("../../templates/stack.init.toml");

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

/// Reads and validates a stack file like [`load`], and also refuses the placeholder values of
/// the `init` template and the examples (documentation domains and addresses): what `stack
/// check` runs, so a file fresh from `fullslack init` does not pass as ready.
pub fn check(path: &Path) -> Result<Stack, StackError> {
    let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |diagnostics| StackError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    };
    let stack = parse(&text).map_err(invalid)?;
    let found = placeholders(&stack);
    if found.is_empty() {
        Ok(stack)
    } else {
        Err(invalid(diagnostics(&text, found)))
    }
}

fn diagnostics(text: &str, problems: Vec<Problem>) -> Vec<Diagnostic> {
    problems
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
        .collect()
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
    Err(diagnostics(text, problems))
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
    let raw = e.message().trim().to_string();
    // A file that parses as TOML failed on a key's type or value, not on its syntax.
    let syntax_ok = toml::de::DeTable::parse(text).is_ok();
    // The key comes from the parsed tree, never from the text at the error: that text may be
    // a value, and a secret written inline would be printed back. A syntax error has no tree:
    // its line and column locate it.
    let key = match e.span() {
        Some(span) if syntax_ok => key_at(text, span.start).unwrap_or_default(),
        _ => String::new(),
    };
    let message = redact_values(&raw);
    if is_secret_key(&key) && !raw.starts_with("unknown field") {
        // Whatever serde says about the value (a string, an unknown variant), it names it.
        // The key is the secret's own (`secrets.X`), not a part of the value.
        let key = key.split('.').take(2).collect::<Vec<_>>().join(".");
        return Diagnostic {
            line,
            column,
            message: "a secret is written here by value".into(),
            hint: format!(
                "secrets are written by reference, never by value: `{} = {{ env = \"VAR\" }}` or `{{ ssm = \"/param\" }}` (and rotate the one written here)",
                key.rsplit('.').next().unwrap_or("NAME")
            ),
            key,
        };
    }
    let hint = if let Some(rest) = raw.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected = backquoted_after(&raw, "expected ");
        match closest(unknown, &expected) {
            Some(best) => format!("unknown key: did you mean `{best}`? Otherwise remove it"),
            None if expected.is_empty() => "remove this key: it is not part of this table".into(),
            None => format!(
                "remove this key; this table accepts: {}",
                expected.join(", ")
            ),
        }
    } else if raw.starts_with("missing field") {
        "add the missing key to this table (see `fullslack init` for an example)".into()
    } else if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected = backquoted_after(&raw, "expected ");
        match closest(unknown, &expected) {
            Some(best) => format!("did you mean `{best}`? (allowed: {})", expected.join(", ")),
            None => format!("use one of: {}", expected.join(", ")),
        }
    } else if raw.starts_with("invalid type") {
        let expected = raw
            .split("expected ")
            .nth(1)
            .unwrap_or("another type")
            .trim();
        format!("write {expected} for `{key}`")
    } else if raw.starts_with("invalid value") || raw.contains("out of range") {
        match range_of(&raw) {
            Some((lo, hi)) => format!("use a whole number from {lo} to {hi}"),
            None => "use a value of the expected kind and range".into(),
        }
    } else if syntax_ok {
        "correct this value (see `fullslack init` for a commented example)".into()
    } else {
        "fix the TOML syntax at this position".into()
    };
    let message = match range_of(&raw) {
        Some((lo, hi)) if !key.is_empty() => {
            format!("`{key}` is out of range: it must be between {lo} and {hi}")
        }
        _ => message,
    };
    Diagnostic {
        line,
        column,
        key,
        message,
        hint,
    }
}

/// Keys whose value is a secret reference (`secrets.X`, `image.password`, `redis.url`).
fn is_secret_key(key: &str) -> bool {
    key.starts_with("secrets.")
        || key == "image.password"
        || key.starts_with("image.password.")
        || ["redis.url", "mongodb.url"]
            .iter()
            .any(|k| key == *k || key.starts_with(&format!("{k}.")))
}

/// The words between backquotes after `marker` (serde's "expected one of `a`, `b`").
fn backquoted_after<'a>(message: &'a str, marker: &str) -> Vec<&'a str> {
    message
        .split(marker)
        .nth(1)
        .map(|s| {
            s.split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, w)| w)
                .collect()
        })
        .unwrap_or_default()
}

/// serde quotes the offending value (`invalid type: string "hunter2", expected …`): keep the
/// kind, drop the value.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let after = &rest[i + "string \"".len()..];
        // The value ends at the last `"` before the next `, expected` (values may hold quotes).
        let end = after
            .find("\", expected")
            .or_else(|| after.rfind('"'))
            .unwrap_or(after.len());
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The range of an integer type named in a serde message (`expected u16`).
fn range_of(message: &str) -> Option<(i64, i64)> {
    if !(message.starts_with("invalid value") || message.contains("out of range")) {
        return None;
    }
    let ty = message.rsplit("expected ").next()?.trim();
    Some(match ty {
        "u8" => (0, i64::from(u8::MAX)),
        "u16" => (0, i64::from(u16::MAX)),
        "u32" => (0, i64::from(u32::MAX)),
        "u64" | "usize" => (0, i64::MAX),
        "i32" => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => return None,
    })
}

/// The dotted key path (`ssh.port`, `hosts[1].address`) whose key or value holds `offset`.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn walk(
        v: &toml::Spanned<DeValue<'_>>,
        path: String,
        offset: usize,
        best: &mut Option<(usize, String)>,
    ) {
        let span = v.span();
        let len = span.end.saturating_sub(span.start);
        if span.start <= offset
            && offset < span.end.max(span.start + 1)
            && best.as_ref().is_none_or(|(l, _)| len <= *l)
        {
            *best = Some((len, path.clone()));
        }
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t {
                    let name = k.get_ref().as_ref();
                    let p = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    let ks = k.span();
                    if ks.start <= offset && offset < ks.end.max(ks.start + 1) {
                        *best = Some((0, p.clone()));
                    }
                    walk(v, p, offset, best);
                }
            }
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    walk(item, format!("{path}[{i}]"), offset, best);
                }
            }
            _ => {}
        }
    }
    let root = DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    for (k, v) in root.get_ref() {
        let name = k.get_ref().as_ref().to_string();
        let ks = k.span();
        if ks.start <= offset && offset < ks.end.max(ks.start + 1) {
            best = Some((0, name.clone()));
        }
        walk(v, name, offset, &mut best);
    }
    best.map(|(_, p)| p).filter(|p| !p.is_empty())
}

/// The candidate equal to `word` or close enough to it to be a typo (CLI subcommands too).
pub fn closest_word<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    closest(word, candidates)
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
        Target::Ec2 => match &s.ec2 {
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
        },
        Target::Ecs => {
            match &s.ecs {
                None => p.push(problem(
                    "target",
                    "target `ecs` needs an [ecs] table",
                    "add [ecs] with region, cluster and subnets (see stacks/ecs-fargate.toml)",
                )),
                Some(ecs) => {
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

/// Every environment variable the chat server reads (kept next to its settings).
pub const SERVER_ENV_NAMES: &str = include_str!("../../../chat-server/env-names.txt");

/// The server's environment variable names.
pub fn server_env_names() -> Vec<&'static str> {
    SERVER_ENV_NAMES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The name of the JWT secret the server reads.
pub const JWT_SECRET_ENV: &str = "FULLSLACK_AUTH__JWT_SECRET";

/// The known server name a misspelt `FULLSLACK_*` name most likely meant.
fn meant(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let rest = name.strip_prefix("FULLSLACK_").unwrap_or(name);
    // A missing section (`FULLSLACK_JWT_SECRET` for `FULLSLACK_AUTH__JWT_SECRET`).
    if let Some(k) = known
        .iter()
        .find(|k| k.ends_with(&format!("__{rest}")) || k.ends_with(&format!("_{rest}")))
    {
        return Some(*k);
    }
    // A cut-short name (`FULLSLACK_LOG` for `FULLSLACK_LOG_FORMAT`).
    if let Some(k) = known.iter().find(|k| k.starts_with(&format!("{name}_"))) {
        return Some(*k);
    }
    closest(name, known)
}

/// `FULLSLACK_*` names in `[secrets]` and `[app] env` must be names the server reads: it
/// ignores unknown top-level names silently, so a typo would vanish at deploy time.
fn env_problems(s: &Stack) -> Vec<Problem> {
    let known = server_env_names();
    let mut p = Vec::new();
    let names = s
        .secrets
        .keys()
        .map(|k| (format!("secrets.{k}"), k))
        .chain(s.app.env.keys().map(|k| (format!("app.env.{k}"), k)));
    for (key, name) in names {
        if !name.starts_with("FULLSLACK_") || known.contains(&name.as_str()) {
            continue;
        }
        p.push(problem(
            key,
            format!("the chat server does not read `{name}`: it would be ignored"),
            match meant(name, &known) {
                Some(k) => format!("did you mean `{k}`? (server settings: chat-server/env-names.txt)"),
                None => "use a name from chat-server/env-names.txt, or drop the FULLSLACK_ prefix for a variable of your own".into(),
            },
        ));
    }
    if s.app.env.contains_key(JWT_SECRET_ENV) {
        p.push(problem(
            format!("app.env.{JWT_SECRET_ENV}"),
            "the JWT secret is written in the stack file in clear",
            format!("move it to [secrets]: {JWT_SECRET_ENV} = {{ ssm = \"/{}/jwt-secret\" }} (and rotate it)", s.name),
        ));
    } else if s.target != Target::Local && !s.secrets.contains_key(JWT_SECRET_ENV) {
        // Deployed images run in production mode, which refuses to start without it; every
        // node must also sign with the same one.
        p.push(problem(
            "secrets",
            format!("no `{JWT_SECRET_ENV}`: the server runs in production mode and refuses to start without one shared secret"),
            match s.target {
                Target::Ssh | Target::Local => format!("add {JWT_SECRET_ENV} = {{ env = \"{JWT_SECRET_ENV}\" }} under [secrets] (at least 32 bytes)"),
                _ => format!("add {JWT_SECRET_ENV} = {{ ssm = \"/{}/jwt-secret\" }} under [secrets] and store it with `fullslack secrets set`", s.name),
            },
        ));
    }
    p
}

/// Domains reserved for documentation (RFC 2606 / 6761): no CA issues for them.
fn placeholder_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    ["example.com", "example.net", "example.org"]
        .iter()
        .any(|e| d == *e || d.ends_with(&format!(".{e}")))
        || [".example", ".invalid"].iter().any(|t| d.ends_with(t))
}

/// Addresses reserved for documentation (RFC 5737, RFC 3849): no host has them.
fn placeholder_ip(a: &str) -> bool {
    match a.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            matches!(
                (o[0], o[1], o[2]),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
            )
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.segments()[..2] == [0x2001, 0x0db8],
        Err(_) => false,
    }
}

/// Values of the `init` template (and the examples) that must be replaced before a deploy.
fn placeholders(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    if s.target != Target::Local {
        for (i, d) in s.domains.iter().enumerate() {
            if placeholder_domain(d) {
                p.push(problem(
                    format!("domains[{i}]"),
                    format!("`{d}` is a placeholder (a documentation domain): no CA issues a certificate for it"),
                    "replace it with your domain, whose A/AAAA records point at the hosts",
                ));
            }
        }
    }
    for (i, h) in s.hosts.iter().enumerate() {
        for (field, value) in [
            ("address", Some(&h.address)),
            ("ipv4", h.ipv4.as_ref()),
            ("ipv6", h.ipv6.as_ref()),
        ] {
            if let Some(v) = value.filter(|v| placeholder_ip(v)) {
                p.push(problem(
                    format!("hosts[{i}].{field}"),
                    format!("`{v}` is a placeholder (a documentation address): no host has it"),
                    "replace it with your host's address (or remove ipv6 if the host has none)",
                ));
            }
        }
    }
    if let Some(email) = &s.tls.acme_email {
        let domain = email.rsplit('@').next().unwrap_or_default();
        if s.tls.enabled && placeholder_domain(domain) {
            p.push(problem(
                "tls.acme_email",
                format!("`{email}` is a placeholder: Let's Encrypt refuses accounts at {domain}"),
                "use an address you read: expiry and problem notices go there",
            ));
        }
    }
    p
}

/// The environment a chat container of a stack gets on top of the image's own
/// ([`crate::image::offline::IMAGE_ENV`]: production mode, listen address, data directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEnv {
    /// Plain variables (`app.env`, the listen port, `FULLSLACK_MODE=local` for `local`).
    pub plain: Vec<(String, String)>,
    /// Secrets (`[secrets]`, external Redis/MongoDB URLs), resolved; written to an env file
    /// on the host, never on a command line.
    pub secrets: Vec<(String, crate::secret::Secret)>,
}

impl ContainerEnv {
    /// Every variable with the image's defaults first, as the container sees them (a later
    /// entry wins). Exposes secrets: only for handing to a process.
    pub fn effective(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = crate::image::offline::IMAGE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in self.plain.iter().cloned().chain(
            self.secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string())),
        ) {
            out.retain(|(o, _)| *o != k);
            out.push((k, v));
        }
        out
    }
}

impl Stack {
    /// The container environment of this stack's chat nodes, resolving each secret reference
    /// with `resolve` (the environment for `{ env = … }`, SSM for `{ ssm = … }`).
    pub fn container_env<E>(
        &self,
        mut resolve: impl FnMut(&SecretRef) -> Result<crate::secret::Secret, E>,
    ) -> Result<ContainerEnv, E> {
        let mut plain = Vec::new();
        if !self.app.env.contains_key("FULLSLACK_LISTEN") {
            plain.push((
                "FULLSLACK_LISTEN".to_string(),
                format!("0.0.0.0:{}", self.app.port),
            ));
        }
        if self.target == Target::Local && !self.app.env.contains_key("FULLSLACK_MODE") {
            // This machine, plain HTTP: non-Secure cookies and a secret kept in the data dir.
            plain.push(("FULLSLACK_MODE".to_string(), "local".to_string()));
        }
        plain.extend(self.app.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut secrets = Vec::new();
        for (name, r) in &self.secrets {
            secrets.push((name.clone(), resolve(r)?));
        }
        for (var, svc) in [
            ("FULLSLACK_REDIS_URL", &self.redis),
            ("FULLSLACK_STORE_URL", &self.mongodb),
        ] {
            if let (ServiceMode::External, Some(r)) = (svc.mode, &svc.url) {
                secrets.push((var.to_string(), resolve(r)?));
            }
        }
        Ok(ContainerEnv { plain, secrets })
    }
}
