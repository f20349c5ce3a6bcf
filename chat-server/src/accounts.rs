//! Accounts: sign-up, sign-in (throttled by [`crate::limits`]), sessions, sign-out (which
//! closes the session's sockets on every node), and users with their presence; the rules for
//! user names and display names.

use time::OffsetDateTime;

use crate::{
    auth::AuthUser,
    error::{ApiError, ApiResult},
    model::{new_id, now, User, UserId},
    store::{NewUser, Session},
    App,
};

/// A signed-in session: the token to hand out and who it is for.
pub struct SignedIn {
    pub token: String,
    pub expires_at: OffsetDateTime,
    pub user: User,
}

pub fn validate_username(name: &str) -> ApiResult<()> {
    let ok = (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "username: 1-32 characters of a-z A-Z 0-9 _ . -".into(),
        ))
    }
}

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): in a name
/// they reorder the text around it (a name that displays as someone else's, or flips the
/// rest of a line).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Display names: 1–64 characters, no control characters (NUL, newlines, C1 controls) and no
/// bidi embedding, override or isolate characters.
pub fn validate_display_name(name: &str) -> ApiResult<()> {
    if name.chars().count() > 64 {
        return Err(ApiError::BadRequest(
            "display_name: at most 64 characters".into(),
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return Err(ApiError::BadRequest(format!(
            "display_name: control and bidi override characters are not allowed (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

impl App {
    /// `client` is the client's address as a rate-limit key ([`crate::proxy::limit_key`]).
    pub async fn register(
        &self,
        client: &str,
        username: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> ApiResult<SignedIn> {
        self.limit_auth_addr(client).await?;
        validate_username(username)?;
        if !(8..=256).contains(&password.len()) {
            return Err(ApiError::BadRequest("password: 8-256 bytes".into()));
        }
        let display = display_name
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .unwrap_or(username);
        validate_display_name(display)?;
        let hash = self.auth.hash_password(password.to_string()).await?;
        let user = self
            .store
            .create_user(NewUser {
                id: new_id(),
                username: username.to_string(),
                display_name: display.to_string(),
                password_hash: hash,
                created_at: now(),
            })
            .await?;
        self.start_session(user).await
    }

    /// Throttled as OWASP advises against guessing without handing strangers a way to lock
    /// an account: refused (429) per client address and per (address, name); per name only
    /// slowed down, after many failures from anywhere, and never refused.
    pub async fn login(&self, client: &str, username: &str, password: &str) -> ApiResult<SignedIn> {
        // Names are unique case-insensitively; longer ones than any valid name cannot sign in
        // and need not make long keys.
        let name: String = username.to_lowercase().chars().take(64).collect();
        self.limit_auth_addr(client).await?;
        self.limit_auth_login(client, &name).await?;
        let delay = self.auth_name_delay(&name).await;
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // Do not hold shutdown up: the client retries (elsewhere) after the delay.
                _ = self.shutdown.cancelled() => {
                    return Err(ApiError::RateLimited {
                        retry_after_ms: delay.as_millis() as u64,
                    });
                }
            }
        }
        let found = self.store.user_by_username(username).await?;
        let hash = found.as_ref().map(|(_, h)| h.clone());
        let ok = self
            .auth
            .verify_password(password.to_string(), hash)
            .await?;
        match (ok, found) {
            (true, Some((user, _))) => self.start_session(user).await,
            _ => {
                // Unknown names count too: the delay must not tell which names exist.
                self.auth_name_failed(&name).await;
                Err(ApiError::Unauthorized("wrong username or password"))
            }
        }
    }

    async fn start_session(&self, mut user: User) -> ApiResult<SignedIn> {
        let created = now();
        let session = Session {
            id: new_id(),
            user_id: user.id.clone(),
            created_at: created,
            expires_at: created + self.auth.session_ttl,
        };
        let (token, expires_at) = self.auth.issue(&user.id, &session.id)?;
        self.store.create_session(session).await?;
        user.presence = self.presence_of(&user.id).await;
        Ok(SignedIn {
            token,
            expires_at,
            user,
        })
    }

    pub async fn refresh(&self, who: &AuthUser) -> ApiResult<SignedIn> {
        let user = self.user(&who.user_id).await?;
        let (token, expires_at) = self.auth.issue(&who.user_id, &who.session_id)?;
        Ok(SignedIn {
            token,
            expires_at,
            user,
        })
    }

    pub async fn logout(&self, who: &AuthUser) -> ApiResult<()> {
        self.store.delete_session(&who.session_id).await?;
        self.revoke_everywhere(&who.user_id, &who.session_id);
        Ok(())
    }

    pub async fn user(&self, id: &str) -> ApiResult<User> {
        let mut user = self
            .store
            .user(id)
            .await?
            .ok_or(ApiError::NotFound("user"))?;
        user.presence = self.presence_of(&user.id).await;
        Ok(user)
    }

    pub async fn users(&self) -> ApiResult<Vec<User>> {
        let mut users = self.store.users().await?;
        let ids: Vec<UserId> = users.iter().map(|u| u.id.clone()).collect();
        for (u, p) in users.iter_mut().zip(self.presences(&ids).await) {
            u.presence = p;
        }
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_refuse_controls_and_bidi_overrides() {
        assert!(validate_display_name("Zoë Smith-Jones (she/her) 🎉").is_ok());
        assert!(
            validate_display_name("مرحبا بالعالم").is_ok(),
            "RTL text itself is fine"
        );
        for bad in [
            "nul\0byte",
            "new\nline",
            "tab\there",
            "c1\u{85}control",
            "\u{202E}evil",
            "a\u{202A}b",
            "a\u{202B}b",
            "a\u{202C}b",
            "a\u{202D}b",
            "a\u{2066}b",
            "a\u{2067}b",
            "a\u{2068}b",
            "a\u{2069}b",
        ] {
            let err = validate_display_name(bad).expect_err(bad);
            assert!(matches!(err, ApiError::BadRequest(_)), "{bad:?}");
            assert!(err.to_string().starts_with("display_name:"), "{err}");
        }
        assert!(validate_display_name(&"x".repeat(65)).is_err());
        assert!(validate_display_name(&"é".repeat(64)).is_ok());
    }
}
