//! Accounts' cryptography and request authentication: Argon2id password hashes, short-lived
//! HS256 access tokens bound to a server-side session (so logout revokes at once), the
//! HttpOnly cookie, and the [`AuthUser`] extractor used by every authenticated route and by the
//! WebSocket handshake. The user always comes from the verified token, never from the client.

use std::{fmt, sync::Arc, time::Duration};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use axum_extra::extract::cookie::{Cookie, SameSite};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{error::ApiError, model::Id, AppState};

pub const COOKIE_NAME: &str = "fullslack_token";

/// A secret value: its Debug and Display never show it, so it cannot leak into logs.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Id,
    sid: Id,
    iat: i64,
    exp: i64,
}

/// Who made the request: the verified token's user and session.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Id,
    pub session_id: Id,
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
    /// Argon2id runs at most one per core at a time. Each hash fills 19 MiB; hundreds at once
    /// (a burst of sign-ups) only queue on the CPU anyway, and glibc keeps every such block
    /// in its per-thread arenas: 200 parallel registrations left 3 GB resident.
    hashing: tokio::sync::Semaphore,
}

impl Auth {
    pub fn new(
        secret: &Secret,
        token_ttl: Duration,
        session_ttl: Duration,
        cookie_secure: bool,
    ) -> Arc<Auth> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Arc::new(Auth {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            token_ttl,
            session_ttl,
            cookie_secure,
            dummy_hash: hash_password("not a real password").unwrap_or_default(),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
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

    /// Runs an Argon2id job on the blocking pool, at most one per core at a time.
    pub async fn argon2<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::Internal)?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|_| ApiError::Internal)
    }

    /// Verifies `password` against `hash` (or the dummy hash when there is no user).
    pub fn verify_password(&self, password: &str, hash: Option<&str>) -> bool {
        let hash = hash.unwrap_or(&self.dummy_hash);
        match PasswordHash::new(hash) {
            Ok(parsed) => {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
                    && hash != self.dummy_hash
            }
            Err(_) => false,
        }
    }
}

/// Argon2id (the `argon2` crate's default algorithm) with a random salt, PHC string format.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| {
            tracing::error!(error = %e, "cannot hash password");
            ApiError::Internal
        })
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
            &Secret::new("x".repeat(40)),
            Duration::from_secs(60),
            Duration::from_secs(600),
            true,
        )
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
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
            &Secret::new("y".repeat(40)),
            Duration::from_secs(60),
            Duration::from_secs(600),
            true,
        );
        assert!(other.verify(&t).is_err());
    }

    #[test]
    fn passwords_are_argon2id_and_verify() {
        let a = auth();
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(a.verify_password("correct horse", Some(&h)));
        assert!(!a.verify_password("wrong horse", Some(&h)));
        assert!(!a.verify_password("not a real password", None));
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
