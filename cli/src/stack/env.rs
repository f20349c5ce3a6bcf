//! Environment variables: the names the chat server reads (`protocol/env-names.txt`), so a
//! misspelt `FULLSLACK_*` name in a stack is refused instead of silently ignored, and the
//! environment a stack's chat containers get (plain values and resolved secrets).

use super::diagnostics::{closest, problem, Problem};
use super::services::{url, Kind};
use super::{ServiceMode, Stack, Target};
use crate::secret::{ExposeSecret, SecretRef, SecretString};

/// Every environment variable the chat server reads (the protocol crate's list, which the
/// server's tests keep equal to its settings).
pub use fullslack_protocol::settings::SERVER_ENV_NAMES;

/// The server's environment variable names.
pub fn server_env_names() -> Vec<&'static str> {
    fullslack_protocol::settings::server_env_names().collect()
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
pub(super) fn env_problems(s: &Stack) -> Vec<Problem> {
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
                Some(k) => format!("did you mean `{k}`? (server settings: protocol/env-names.txt)"),
                None => "use a name from protocol/env-names.txt, or drop the FULLSLACK_ prefix for a variable of your own".into(),
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

/// The environment a chat container of a stack gets on top of the image's own
/// ([`crate::image::offline::IMAGE_ENV`]: production mode, listen address, data directory).
#[derive(Debug, Clone)]
pub struct ContainerEnv {
    /// Plain variables (`app.env`, the listen port, `FULLSLACK_MODE=local` for `local`, the
    /// URLs of managed Redis/MongoDB on the stack network).
    pub plain: Vec<(String, String)>,
    /// Secrets (`[secrets]`, external Redis/MongoDB URLs), resolved; written to an env file
    /// on the host, never on a command line.
    pub secrets: Vec<(String, SecretString)>,
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
                .map(|(k, v)| (k.clone(), v.expose_secret().to_string())),
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
        mut resolve: impl FnMut(&SecretRef) -> Result<SecretString, E>,
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
            (Kind::Redis.env_var(), &self.redis),
            (Kind::Mongodb.env_var(), &self.mongodb),
        ] {
            if let (ServiceMode::External, Some(r)) = (svc.mode, &svc.url) {
                secrets.push((var.to_string(), resolve(r)?));
            }
        }
        // A managed service is reached by its container name on the stack's network; the
        // URL carries no credential (the port is never published), so it is a plain setting.
        for (kind, svc) in [(Kind::Redis, &self.redis), (Kind::Mongodb, &self.mongodb)] {
            let var = kind.env_var();
            if svc.mode == ServiceMode::Managed && !self.app.env.contains_key(var) {
                plain.push((var.to_string(), url(&self.name, kind)));
            }
        }
        Ok(ContainerEnv { plain, secrets })
    }
}
