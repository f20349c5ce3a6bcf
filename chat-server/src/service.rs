//! The chat's rules for channels and messages, shared by the REST routes and the WebSocket:
//! validation, rate limits ([`crate::limits`]), authorization on every channel access; what
//! the store recorded goes out through [`crate::delivery`]. Accounts are in [`crate::accounts`].
//!
//! Authorization: a channel you may not read answers `NotFound` exactly like a channel that
//! does not exist (no probing for private channels). Public channels are readable by every
//! signed-in user; writing needs membership. The node's channel cache answers quickly, but the
//! store decides: every channel write checks membership again inside its own transaction
//! ([`StoreError::NotMember`]), so a send racing its author's leave is either stored before
//! the `member_left` or refused.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
};

use crate::{
    error::{ApiError, ApiResult},
    model::{
        new_id, now, Channel, ChannelId, ChannelKind, Event, Member, Message, ReceiptStatus, Role,
        UserId,
    },
    store::{NewChannel, Page, StoreError, Watermark},
    App,
};

/// What the node remembers about a channel to authorize and route without a store read.
#[derive(Debug)]
pub struct ChannelMeta {
    pub kind: ChannelKind,
    pub members: HashSet<UserId>,
}

const MAX_GROUP: usize = 256;

pub fn validate_channel_name(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "channel name: 1-64 characters of a-z 0-9 - _".into(),
        ))
    }
}

pub(crate) fn validate_client_id(id: &str) -> ApiResult<()> {
    if (1..=64).contains(&id.len()) && !id.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::BadRequest("client_id: 1-64 characters".into()))
    }
}

/// `@name` tokens of a text (without the `@`), at most 20.
pub fn mention_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in text.match_indices('@') {
        let before_ok = text[..i]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric());
        if !before_ok {
            continue;
        }
        let name: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .collect();
        let name = name.trim_end_matches(['.', '-']).to_string();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
        if names.len() == 20 {
            break;
        }
    }
    names
}

impl App {
    // ---- channels ---------------------------------------------------------------------------

    /// The cached routing facts of a channel, loaded on first use.
    pub async fn channel_meta(&self, channel_id: &str) -> ApiResult<Arc<ChannelMeta>> {
        if let Some(meta) = self.channel_cache.get(channel_id) {
            return Ok(meta.clone());
        }
        let generation = self.channel_cache_gen.load(Ordering::Acquire);
        let ch = self
            .store
            .channel(channel_id)
            .await?
            .ok_or(ApiError::NotFound("channel"))?;
        let meta = Arc::new(ChannelMeta {
            kind: ch.kind,
            members: ch.member_ids.into_iter().collect(),
        });
        // Cached only if no invalidation happened since before the read (checked under the
        // entry's lock, which `invalidate_channel`'s removal also takes): a load that read the
        // members before a leave must not put the leaver back into the cache.
        if let dashmap::Entry::Vacant(slot) = self.channel_cache.entry(channel_id.into()) {
            if self.channel_cache_gen.load(Ordering::Acquire) == generation {
                slot.insert(meta.clone());
            }
        }
        Ok(meta)
    }

    /// Forgets the cached facts of a channel (its membership changed).
    pub fn invalidate_channel(&self, channel_id: &str) {
        self.channel_cache_gen.fetch_add(1, Ordering::AcqRel);
        self.channel_cache.remove(channel_id);
    }

    /// Maps a store error of a write on behalf of `meta`'s channel: `NotMember` (the store saw
    /// a membership the cache did not: a leave raced this write) becomes the same answer as
    /// [`App::require_member`]'s, and the stale cache entry goes.
    pub(crate) fn write_error(
        &self,
        channel_id: &str,
        meta: &ChannelMeta,
        e: StoreError,
    ) -> ApiError {
        match e {
            StoreError::NotMember => {
                self.invalidate_channel(channel_id);
                if meta.kind == ChannelKind::Public {
                    ApiError::Forbidden("join the channel first")
                } else {
                    ApiError::NotFound("channel")
                }
            }
            other => other.into(),
        }
    }

    /// Whether receipts are tracked for the channel: it has at most `receipts_max_members`.
    pub fn tracks_receipts(&self, meta: &ChannelMeta) -> bool {
        meta.members.len() <= self.settings.realtime.receipts_max_members
    }

    /// [`App::tracks_receipts`]; `None` when not known without a read.
    pub fn receipts_enabled_cached(&self, channel_id: &str) -> Option<bool> {
        self.channel_cache
            .get(channel_id)
            .map(|m| self.tracks_receipts(&m))
    }

    /// Read access: members, and everyone for public channels. Others see "not found".
    pub async fn require_readable(
        &self,
        user_id: &str,
        channel_id: &str,
    ) -> ApiResult<Arc<ChannelMeta>> {
        let meta = self.channel_meta(channel_id).await?;
        if meta.members.contains(user_id) || meta.kind == ChannelKind::Public {
            Ok(meta)
        } else {
            Err(ApiError::NotFound("channel"))
        }
    }

    /// Write access: members only.
    pub async fn require_member(
        &self,
        user_id: &str,
        channel_id: &str,
    ) -> ApiResult<Arc<ChannelMeta>> {
        let meta = self.require_readable(user_id, channel_id).await?;
        if meta.members.contains(user_id) {
            Ok(meta)
        } else {
            Err(ApiError::Forbidden("join the channel first"))
        }
    }

    pub async fn channels_of(&self, user_id: &str) -> ApiResult<Vec<Channel>> {
        Ok(self.store.channels_for_user(user_id).await?)
    }

    pub async fn public_channels(&self) -> ApiResult<Vec<Channel>> {
        Ok(self.store.public_channels().await?)
    }

    pub async fn channel_for(&self, user_id: &str, channel_id: &str) -> ApiResult<Channel> {
        self.require_readable(user_id, channel_id).await?;
        self.member_channel(user_id, channel_id)
            .await?
            .ok_or(ApiError::NotFound("channel"))
    }

    async fn existing_users(&self, ids: &[UserId]) -> ApiResult<()> {
        for id in ids {
            if self.store.user(id).await?.is_none() {
                return Err(ApiError::BadRequest(format!("no user with id {id:?}")));
            }
        }
        Ok(())
    }

    pub async fn create_channel(
        &self,
        user_id: &str,
        name: &str,
        kind: ChannelKind,
        topic: &str,
        member_ids: Vec<UserId>,
    ) -> ApiResult<Channel> {
        validate_channel_name(name)?;
        if !matches!(kind, ChannelKind::Public | ChannelKind::Private) {
            return Err(ApiError::BadRequest(
                "kind: public or private (use /api/dms for direct messages)".into(),
            ));
        }
        if topic.chars().count() > 250 {
            return Err(ApiError::BadRequest("topic: at most 250 characters".into()));
        }
        let mut members: Vec<UserId> = member_ids.into_iter().filter(|m| m != user_id).collect();
        members.sort();
        members.dedup();
        self.existing_users(&members).await?;
        let (channel, events) = self
            .store
            .create_channel(NewChannel {
                id: new_id(),
                kind,
                name: name.to_string(),
                topic: topic.to_string(),
                created_by: user_id.into(),
                created_at: now(),
                member_ids: members,
                dm_key: None,
            })
            .await?;
        self.publish_all(events).await;
        Ok(channel)
    }

    /// One other user: the 1:1 DM (always the same one); none: notes to self; more: a group.
    pub async fn open_dm(&self, user_id: &str, user_ids: Vec<UserId>) -> ApiResult<Channel> {
        let mut others: Vec<UserId> = user_ids.into_iter().filter(|u| u != user_id).collect();
        others.sort();
        others.dedup();
        if others.len() > MAX_GROUP {
            return Err(ApiError::BadRequest(format!(
                "a group has at most {MAX_GROUP} members"
            )));
        }
        self.existing_users(&others).await?;
        let (kind, dm_key) = match others.as_slice() {
            [] => (ChannelKind::Dm, Some(format!("self:{user_id}"))),
            [other] => {
                let (a, b) = if user_id < other.as_str() {
                    (user_id, other.as_str())
                } else {
                    (other.as_str(), user_id)
                };
                (ChannelKind::Dm, Some(format!("dm:{a}:{b}")))
            }
            _ => (ChannelKind::Group, None),
        };
        let (mut channel, events) = self
            .store
            .create_channel(NewChannel {
                id: new_id(),
                kind,
                name: String::new(),
                topic: String::new(),
                created_by: user_id.into(),
                created_at: now(),
                member_ids: others,
                dm_key,
            })
            .await?;
        self.publish_all(events).await;
        if let Some(m) = self.store.member(&channel.id, user_id).await? {
            channel.read_seq = Some(m.read_seq);
        }
        Ok(channel)
    }

    pub async fn join(&self, user_id: &str, channel_id: &str) -> ApiResult<Channel> {
        let meta = self.require_readable(user_id, channel_id).await?;
        if meta.kind != ChannelKind::Public {
            return Err(ApiError::Forbidden(
                "only public channels can be joined; ask a member to invite you",
            ));
        }
        let joined = self
            .store
            .add_member(channel_id, user_id, Role::Member, user_id)
            .await?;
        // Before publishing: this node stops trusting the old membership at once.
        self.invalidate_channel(channel_id);
        self.publish_if_any(joined).await;
        self.channel_for(user_id, channel_id).await
    }

    pub async fn leave(&self, user_id: &str, channel_id: &str) -> ApiResult<()> {
        let meta = self.require_member(user_id, channel_id).await?;
        if meta.kind == ChannelKind::Dm {
            return Err(ApiError::BadRequest(
                "a direct message cannot be left".into(),
            ));
        }
        let left = self.store.remove_member(channel_id, user_id).await?;
        // Before publishing: this node stops trusting the old membership at once.
        self.invalidate_channel(channel_id);
        self.publish_if_any(left).await;
        Ok(())
    }

    pub async fn invite(&self, user_id: &str, channel_id: &str, invitee: &str) -> ApiResult<()> {
        let meta = self.require_member(user_id, channel_id).await?;
        if meta.kind == ChannelKind::Dm {
            return Err(ApiError::BadRequest(
                "a 1:1 direct message cannot grow: start a group instead".into(),
            ));
        }
        if meta.kind == ChannelKind::Group && meta.members.len() >= MAX_GROUP {
            return Err(ApiError::BadRequest(format!(
                "a group has at most {MAX_GROUP} members"
            )));
        }
        self.existing_users(&[invitee.into()]).await?;
        let joined = self
            .store
            .add_member(channel_id, invitee, Role::Member, user_id)
            .await?;
        self.invalidate_channel(channel_id);
        self.publish_if_any(joined).await;
        Ok(())
    }

    pub async fn members(&self, user_id: &str, channel_id: &str) -> ApiResult<Vec<Member>> {
        self.require_readable(user_id, channel_id).await?;
        Ok(self.store.members(channel_id).await?)
    }

    // ---- messages ---------------------------------------------------------------------------

    pub(crate) fn validate_text(&self, text: &str) -> ApiResult<()> {
        if text.trim().is_empty() {
            return Err(ApiError::BadRequest("text: must not be empty".into()));
        }
        let max = self.settings.limits.max_message_len;
        let len = text.chars().count();
        if len > max {
            return Err(ApiError::TooLarge(format!(
                "message is {len} characters; the limit is {max}"
            )));
        }
        Ok(())
    }

    pub(crate) async fn resolve_mentions(&self, text: &str) -> ApiResult<Vec<UserId>> {
        let mut ids = Vec::new();
        for name in mention_names(text) {
            if let Some((u, _)) = self.store.user_by_username(&name).await? {
                if !ids.contains(&u.id) {
                    ids.push(u.id);
                }
            }
        }
        Ok(ids)
    }

    async fn own_message(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
    ) -> ApiResult<Arc<ChannelMeta>> {
        let meta = self.require_member(user_id, channel_id).await?;
        let msg = self
            .store
            .message(channel_id, message_id)
            .await?
            .ok_or(ApiError::NotFound("message"))?;
        if msg.deleted {
            return Err(ApiError::NotFound("message"));
        }
        if msg.author_id != user_id {
            return Err(ApiError::Forbidden("only the author can change a message"));
        }
        Ok(meta)
    }

    pub async fn edit_message(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
        text: &str,
    ) -> ApiResult<i64> {
        self.limit_send(user_id).await?;
        self.validate_text(text)?;
        let meta = self.own_message(user_id, channel_id, message_id).await?;
        let mentions = self.resolve_mentions(text).await?;
        let ev = self
            .store
            .edit_message(channel_id, message_id, user_id, text, &mentions, now())
            .await
            .map_err(|e| self.write_error(channel_id, &meta, e))?;
        Ok(self.publish_seq(ev).await)
    }

    pub async fn delete_message(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
    ) -> ApiResult<i64> {
        let meta = self.own_message(user_id, channel_id, message_id).await?;
        let ev = self
            .store
            .delete_message(channel_id, message_id, user_id, now())
            .await
            .map_err(|e| self.write_error(channel_id, &meta, e))?;
        Ok(self.publish_seq(ev).await)
    }

    pub async fn react(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
        emoji: &str,
        add: bool,
    ) -> ApiResult<Option<i64>> {
        self.limit_send(user_id).await?;
        if !(1..=32).contains(&emoji.chars().count()) || emoji.chars().any(char::is_whitespace) {
            return Err(ApiError::BadRequest(
                "emoji: 1-32 characters, no spaces".into(),
            ));
        }
        let meta = self.require_member(user_id, channel_id).await?;
        let ev = self
            .store
            .react(channel_id, message_id, user_id, emoji, add, now())
            .await
            .map_err(|e| self.write_error(channel_id, &meta, e))?;
        Ok(self.publish_if_any(ev).await)
    }

    /// Moves the user's read watermark; a receipt event when the channel is small enough.
    pub async fn mark_read(
        &self,
        user_id: &str,
        channel_id: &str,
        seq: i64,
    ) -> ApiResult<Option<i64>> {
        let meta = self.require_member(user_id, channel_id).await?;
        let emit = self.tracks_receipts(&meta);
        let ev = self
            .store
            .advance_watermark(channel_id, user_id, Watermark::Read(seq), emit, now())
            .await
            .map_err(|e| self.write_error(channel_id, &meta, e))?;
        Ok(self.publish_if_any(ev).await)
    }

    pub async fn history(
        &self,
        user_id: &str,
        channel_id: &str,
        page: Page,
        limit: usize,
    ) -> ApiResult<(Vec<Message>, bool)> {
        self.require_readable(user_id, channel_id).await?;
        let limit = limit.clamp(1, self.settings.limits.history_page_max);
        Ok(self.store.history(channel_id, page, limit).await?)
    }

    pub async fn events(
        &self,
        user_id: &str,
        channel_id: &str,
        after: i64,
        limit: usize,
    ) -> ApiResult<Vec<Event>> {
        self.require_readable(user_id, channel_id).await?;
        let limit = limit.clamp(1, 1000);
        Ok(self.store.events_after(channel_id, after, limit).await?)
    }

    pub async fn message(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
    ) -> ApiResult<Message> {
        self.require_readable(user_id, channel_id).await?;
        self.store
            .message(channel_id, message_id)
            .await?
            .ok_or(ApiError::NotFound("message"))
    }

    pub async fn thread(
        &self,
        user_id: &str,
        channel_id: &str,
        root_id: &str,
    ) -> ApiResult<(Message, Vec<Message>)> {
        let root = self.message(user_id, channel_id, root_id).await?;
        let replies = self.store.replies(channel_id, root_id).await?;
        Ok((root, replies))
    }

    pub async fn receipts(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
    ) -> ApiResult<Vec<(UserId, ReceiptStatus)>> {
        self.require_member(user_id, channel_id).await?;
        let msg = self
            .store
            .message(channel_id, message_id)
            .await?
            .ok_or(ApiError::NotFound("message"))?;
        let members = self.store.members(channel_id).await?;
        Ok(members
            .iter()
            .filter(|m| m.user_id != msg.author_id)
            .map(|m| (m.user_id.clone(), m.status_of(msg.seq)))
            .collect())
    }

    pub async fn search(
        &self,
        user_id: &str,
        query: &str,
        channel_id: Option<&str>,
        limit: usize,
    ) -> ApiResult<Vec<Message>> {
        if query.chars().count() > 200 {
            return Err(ApiError::BadRequest("q: at most 200 characters".into()));
        }
        if let Some(ch) = channel_id {
            self.require_readable(user_id, ch).await?;
        }
        Ok(self
            .store
            .search(user_id, query, channel_id, limit.clamp(1, 100))
            .await?)
    }
}

/// What a live socket reads (`ws/*` goes through these, never to the store itself): its
/// memberships to follow, a channel as its member sees it, the events after a cursor, whether
/// its session still stands, its watched users' last seen.
impl App {
    /// The user's channels with the newest seq of each: what a `resume` follows.
    pub async fn memberships(&self, user_id: &str) -> ApiResult<Vec<(ChannelId, i64)>> {
        Ok(self.store.memberships(user_id).await?)
    }

    /// A channel as its member `user_id` sees it (with their read position); `None` once it
    /// is gone. No access check: for the user's own memberships (see [`App::channel_for`]).
    pub async fn member_channel(
        &self,
        user_id: &str,
        channel_id: &str,
    ) -> ApiResult<Option<Channel>> {
        let Some(mut channel) = self.store.channel(channel_id).await? else {
            return Ok(None);
        };
        if let Some(m) = self.store.member(channel_id, user_id).await? {
            channel.read_seq = Some(m.read_seq);
        }
        Ok(Some(channel))
    }

    /// Up to `limit` stored events of `channel_id` after seq `after`, in order: a refill.
    pub async fn events_after(
        &self,
        channel_id: &str,
        after: i64,
        limit: usize,
    ) -> ApiResult<Vec<Event>> {
        Ok(self.store.events_after(channel_id, after, limit).await?)
    }

    /// Whether the session still stands (neither signed out, revoked nor expired).
    pub async fn session_stands(&self, session_id: &str) -> ApiResult<bool> {
        Ok(self.store.session_user(session_id, now()).await?.is_some())
    }

    /// The last seen time of each of `user_ids` that is a user (others are left out).
    pub async fn last_seen_of(
        &self,
        user_ids: &[UserId],
    ) -> ApiResult<HashMap<UserId, Option<time::OffsetDateTime>>> {
        let users = self.store.users_by_ids(user_ids).await?;
        Ok(users.into_iter().map(|u| (u.id, u.last_seen)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::validate_username;

    #[test]
    fn mentions_are_found_at_word_starts() {
        assert_eq!(
            mention_names("hi @bob and @carol.x, mail a@b.c @bob"),
            vec!["bob", "carol.x"]
        );
        assert!(mention_names("no mentions").is_empty());
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_username("alice_1.x-y").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("bad name").is_err());
        assert!(validate_channel_name("general").is_ok());
        assert!(validate_channel_name("General").is_err());
    }
}
