//! From a parse error to a [`Diagnostic`]: toml/serde messages turned into a line, a key and
//! a fix (did-you-mean for unknown keys and variants, ranges for numbers), with any value
//! serde quotes redacted and a secret written by value named without echoing it. Also the
//! key ↔ position lookups validation problems use.

use super::Diagnostic;

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

pub(super) fn from_toml_error(text: &str, e: &toml::de::Error) -> Diagnostic {
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

/// The candidate nearest to `word` by edit distance, if it is close enough to be a typo.
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
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

/// One thing wrong with a parsed stack: the dotted key, what is wrong, the fix. The rules
/// (validate, env, placeholders) return these; `load` turns them into located diagnostics.
pub(super) struct Problem {
    pub(super) key: String,
    pub(super) message: String,
    pub(super) hint: String,
}

pub(super) fn problem(
    key: impl Into<String>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
        hint: hint.into(),
    }
}
