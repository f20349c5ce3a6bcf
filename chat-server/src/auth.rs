//! Accounts' cryptography and request authentication: Argon2id password hashes, short-lived
//! HS256 access tokens bound to a server-side session (so logout revokes at once), the
//! HttpOnly cookie, and the [`AuthUser`] extractor used by every authenticated route and by the
//! WebSocket handshake. The user always comes from the verified token, never from the client.
//!
//! Argon2id runs on [`Hashers`]: a few dedicated threads, each reusing one block of Argon2
//! memory for every hash it computes.

use std::{
    panic::AssertUnwindSafe,
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use argon2::{
    password_hash::{
        rand_core::{OsRng, RngCore},
        Output, ParamsString, PasswordHash, SaltString,
    },
    Algorithm as Argon2Algorithm, Argon2, Block, Params, Version,
};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use axum_extra::extract::cookie::{Cookie, SameSite};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    error::ApiError,
    model::{SessionId, UserId},
    AppState,
};

pub const COOKIE_NAME: &str = "fullslack_token";

/// Secrets (the JWT signing key, a Redis URL with its password) are the workspace's one
/// secret string, `secrecy`'s: redacted `Debug`, no `Display`, zeroed on drop, revealed only by
/// `expose_secret()`, so they cannot leak into logs.
pub use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: UserId,
    sid: SessionId,
    iat: i64,
    exp: i64,
}

/// Who made the request: the verified token's user and session.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: UserId,
    pub session_id: SessionId,
    /// When the token expires (the socket is closed then unless refreshed by reconnecting).
    pub expires_at: OffsetDateTime,
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub token_ttl: Duration,
    pub session_ttl: Duration,
    pub cookie_secure: bool,
    /// Verified against when a user does not exist, so timing does not reveal user names.
    dummy_hash: String,
    hashers: Hashers,
}

impl Auth {
    pub fn new(
        secret: &SecretString,
        token_ttl: Duration,
        session_ttl: Duration,
        cookie_secure: bool,
    ) -> Arc<Auth> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Arc::new(Auth {
            encoding: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            validation,
            token_ttl,
            session_ttl,
            cookie_secure,
            dummy_hash: dummy_hash(),
            hashers: Hashers::start(),
        })
    }

    /// A signed access token for `user_id` in `session_id`, and when it expires.
    pub fn issue(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<(String, OffsetDateTime), ApiError> {
        let now = OffsetDateTime::now_utc();
        let exp = now + self.token_ttl;
        let claims = Claims {
            sub: user_id.into(),
            sid: session_id.into(),
            iat: now.unix_timestamp(),
            exp: exp.unix_timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| {
            tracing::error!(error = %e, "cannot sign token");
            ApiError::Internal
        })?;
        Ok((token, exp))
    }

    /// Checks signature, algorithm and expiry. Session revocation is checked by the caller.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::Unauthorized("invalid or expired token"))?;
        let expires_at = OffsetDateTime::from_unix_timestamp(data.claims.exp)
            .map_err(|_| ApiError::Unauthorized("invalid or expired token"))?;
        Ok(AuthUser {
            user_id: data.claims.sub,
            session_id: data.claims.sid,
            expires_at,
        })
    }

    pub fn cookie(&self, token: String) -> Cookie<'static> {
        Cookie::build((COOKIE_NAME, token))
            .http_only(true)
            .secure(self.cookie_secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(time::Duration::seconds(self.token_ttl.as_secs() as i64))
            .build()
    }

    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut c = self.cookie(String::new());
        c.make_removal();
        c
    }

    /// A new Argon2id hash of `password` (random salt, PHC string format).
    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        self.hashers
            .run(move |mem| hash_with(mem, password.as_bytes()))
            .await?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot hash password");
                ApiError::Internal
            })
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no user
    /// (same work either way, so the answer's timing does not tell whether the user exists).
    pub async fn verify_password(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let is_dummy = hash.is_none();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = self
            .hashers
            .run(move |mem| verify_with(mem, password.as_bytes(), &hash))
            .await?;
        Ok(ok && !is_dummy)
    }
}

/// Argon2id v19 with the `argon2` crate's default cost (m = 19 MiB, t = 2, p = 1): what every
/// stored hash so far was made with. A stored hash's own parameters are used to verify it.
fn argon2id() -> Argon2<'static> {
    Argon2::new(Argon2Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// A PHC string with the real parameters and a random salt and output: verifying against it
/// costs a real hash, and nothing (with overwhelming probability) matches it.
fn dummy_hash() -> String {
    let salt = SaltString::generate(&mut OsRng);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    OsRng.fill_bytes(&mut out);
    let params = Params::default();
    let phc = match (ParamsString::try_from(&params), Output::new(&out)) {
        (Ok(p), Ok(o)) => PasswordHash {
            algorithm: Argon2Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: p,
            salt: Some(salt.as_salt()),
            hash: Some(o),
        }
        .to_string(),
        // Unreachable with the crate's own default parameters; an empty dummy still verifies
        // nothing (parsing fails) but then skips the work.
        _ => String::new(),
    };
    phc
}

/// The memory an Argon2 run needs, from a thread's reusable buffer. Parameters larger than the
/// default (a hash made elsewhere) get a buffer of their own that is freed after the run, so
/// the kept one never grows past the default's 19 MiB.
fn with_blocks<T>(mem: &mut Vec<Block>, params: &Params, run: impl FnOnce(&mut [Block]) -> T) -> T {
    let n = params.block_count();
    if n > Params::default().block_count() {
        let mut own = vec![Block::default(); n];
        return run(&mut own);
    }
    if mem.len() < n {
        mem.resize(n, Block::default());
    }
    run(&mut mem[..n])
}

/// Argon2id of `password` with a random salt, as a PHC string (`$argon2id$v=19$m=…`).
fn hash_with(
    mem: &mut Vec<Block>,
    password: &[u8],
) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = argon2id();
    let params = argon.params().clone();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let out_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = with_blocks(mem, &params, |blocks| {
        Output::init_with(out_len, |out| {
            argon
                .hash_password_into_with_memory(password, salt_bytes, out, blocks)
                .map_err(Into::into)
        })
    })?;
    Ok(PasswordHash {
        algorithm: Argon2Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Recomputes `phc`'s hash of `password` with its own algorithm, version, parameters and salt,
/// and compares in constant time (`Output`'s equality). Any malformed string verifies nothing.
fn verify_with(mem: &mut Vec<Block>, password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Argon2Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let computed = with_blocks(mem, &params, |blocks| {
        Output::init_with(expected.len(), |out| {
            argon
                .hash_password_into_with_memory(password, salt_bytes, out, blocks)
                .map_err(Into::into)
        })
    });
    matches!(computed, Ok(c) if c == expected)
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Dedicated Argon2 threads, one per core (at most [`Hashers::MAX_THREADS`]). Each owns one
/// Argon2 memory buffer (19 MiB, allocated on its first hash) and reuses it for every hash.
///
/// Why not `spawn_blocking`: a fresh 19 MiB buffer per hash on the blocking pool's many
/// threads stayed resident: glibc raises its mmap threshold after the first such block is
/// freed, so later ones come from per-thread arenas that are never given back (about 19 MB
/// per sign-up or sign-in: 13.6 MB fresh, 413 MB after 100 hashes). Here the resident cost is
/// fixed at threads × 19 MiB. Hashes wait their turn in the queue (they only compete for the
/// CPU anyway).
pub struct Hashers {
    jobs: mpsc::Sender<Job>,
}

impl Hashers {
    /// Enough for a big machine's sign-up burst; bounds the kept memory (8 × 19 MiB).
    pub const MAX_THREADS: usize = 8;

    pub fn start() -> Hashers {
        let threads = std::thread::available_parallelism()
            .map_or(2, std::num::NonZero::get)
            .clamp(1, Self::MAX_THREADS);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut mem: Vec<Block> = Vec::new();
                    loop {
                        // The lock is held only while waiting for a job, not while hashing.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        // All senders gone: the node is dropped, and the buffer with it.
                        let Ok(job) = job else { return };
                        // A panicking job loses only its own answer, never the thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut mem)));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an Argon2 thread");
            }
        }
        // Without any thread the receiver is dropped here and every job fails at once.
        Hashers { jobs: tx }
    }

    /// Runs `job` on one of the threads with its buffer and awaits the answer.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |mem| {
            let _ = tx.send(job(mem));
        });
        if self.jobs.send(job).is_err() {
            tracing::error!("no Argon2 thread is running");
            return Err(ApiError::Internal);
        }
        rx.await.map_err(|_| ApiError::Internal)
    }
}

/// The bearer token of a request: `Authorization: Bearer …` first, then the cookie.
pub fn token_from_parts(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    for value in parts.headers.get_all(header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for c in Cookie::split_parse(s).flatten() {
            if c.name() == COOKIE_NAME && !c.value().is_empty() {
                return Some(c.value().to_string());
            }
        }
    }
    None
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = token_from_parts(parts).ok_or(ApiError::Unauthorized("missing token"))?;
        let user = app.auth.verify(&token)?;
        match app
            .store
            .session_user(&user.session_id, OffsetDateTime::now_utc())
            .await?
        {
            Some(owner) if owner == user.user_id => Ok(user),
            _ => Err(ApiError::Unauthorized("session ended: sign in again")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Arc<Auth> {
        Auth::new(
            &SecretString::from("x".repeat(40)),
            Duration::from_secs(60),
            Duration::from_secs(600),
            true,
        )
    }

    #[test]
    fn secrets_never_print() {
        let s = SecretString::from("hunter2hunter2");
        assert!(!format!("{s:?} {s:#?}").contains("hunter2"));
    }

    #[test]
    fn tokens_round_trip_and_tampering_is_refused() {
        let a = auth();
        let (t, _) = a.issue("u1", "s1").unwrap();
        let u = a.verify(&t).unwrap();
        assert_eq!((u.user_id.as_str(), u.session_id.as_str()), ("u1", "s1"));
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(a.verify(&bad).is_err());
        let other = Auth::new(
            &SecretString::from("y".repeat(40)),
            Duration::from_secs(60),
            Duration::from_secs(600),
            true,
        );
        assert!(other.verify(&t).is_err());
    }

    #[tokio::test]
    async fn passwords_are_argon2id_and_verify() {
        let a = auth();
        let h = a.hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        let verify =
            |pw: &str, h: Option<&str>| a.verify_password(pw.to_string(), h.map(str::to_string));
        assert!(verify("correct horse", Some(&h)).await.unwrap());
        assert!(!verify("wrong horse", Some(&h)).await.unwrap());
        assert!(!verify("not a real password", None).await.unwrap());
        assert!(!verify("correct horse", Some("$argon2id$garbage"))
            .await
            .unwrap());
        // The dummy hash has the real cost, so an unknown user costs a real verification.
        assert!(a.dummy_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let a = auth();
        // What the server stored before the thread pool: `Argon2::default().hash_password`.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(a
            .verify_password("correct horse".into(), Some(old.clone()))
            .await
            .unwrap());
        assert!(!a
            .verify_password("wrong horse".into(), Some(old))
            .await
            .unwrap());
        // Other parameters (a smaller cost, Argon2i) verify with their own settings.
        let cheap = Argon2::new(
            Argon2Algorithm::Argon2i,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw pw pw pw", &salt)
        .unwrap()
        .to_string();
        assert!(a
            .verify_password("pw pw pw pw".into(), Some(cheap))
            .await
            .unwrap());
        // And the pool's hashes verify with the crate's own verifier.
        use argon2::password_hash::PasswordVerifier;
        let new = a.hash_password("correct horse".into()).await.unwrap();
        Argon2::default()
            .verify_password(b"correct horse", &PasswordHash::new(&new).unwrap())
            .unwrap();
    }

    #[test]
    fn cookie_is_httponly_samesite_and_secure_when_asked() {
        let c = auth().cookie("tok".into()).to_string();
        assert!(
            c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Secure")
                && c.contains("Path=/"),
            "{c}"
        );
    }
}
