//! The socket's presence and typing frames: typing relayed at most once a second per channel,
//! `presence_subscribe` answered with every watched user's status in one store read.

use std::{ops::ControlFlow, time::Duration};

use tokio::time::Instant;

use super::{Connection, Flow};
use crate::{
    model::{ChannelId, UserId},
    protocol::ServerFrame,
};

impl Connection {
    pub(super) async fn typing(&mut self, channel: ChannelId) -> Flow {
        // At most one relay per channel per second from a socket: typing is a hint, not a stream.
        if self
            .last_typing
            .get(&channel)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return ControlFlow::Continue(());
        }
        match self.app.require_member(&self.who.user_id, &channel).await {
            Ok(_) => {
                self.last_typing.insert(channel.clone(), Instant::now());
                let frame = ServerFrame::Typing {
                    channel: channel.clone(),
                    user_id: self.who.user_id.clone(),
                    expires_in_ms: self.app.settings.realtime.typing_ttl_ms,
                };
                self.app.relay_typing(&channel, &self.who.user_id, &frame);
                ControlFlow::Continue(())
            }
            Err(e) => self.send_error(None, e.code(), e.to_string(), None).await,
        }
    }

    /// Watches the listed users (at most `MAX_PRESENCE_IDS` per frame; more is refused whole,
    /// nothing watched) and answers each one's presence now. The frame costs one store read
    /// (every last seen at once) whatever its size; ids of no user are skipped.
    pub(super) async fn presence_subscribe(&mut self, user_ids: Vec<UserId>) -> Flow {
        use crate::protocol::MAX_PRESENCE_IDS;
        if user_ids.len() > MAX_PRESENCE_IDS {
            let message = format!(
                "presence_subscribe: at most {MAX_PRESENCE_IDS} user_ids per frame (got {}); send several frames",
                user_ids.len()
            );
            return self.send_error(None, "bad_frame", message, None).await;
        }
        let mut unique = std::collections::HashSet::new();
        let user_ids: Vec<UserId> = user_ids
            .into_iter()
            .filter(|id| unique.insert(id.clone()))
            .collect();
        let mut last_seen = match self.app.last_seen_of(&user_ids).await {
            Ok(last_seen) => last_seen,
            Err(e) => return self.send_error(None, e.code(), e.to_string(), None).await,
        };
        let user_ids: Vec<UserId> = user_ids
            .into_iter()
            .filter(|id| last_seen.contains_key(id))
            .collect();
        self.app.hub.watch(&self.handle, &user_ids);
        let statuses = self.app.presences(&user_ids).await;
        for (id, status) in user_ids.iter().zip(&statuses) {
            self.app.hub.note_told(id, *status);
        }
        for (id, status) in user_ids.into_iter().zip(statuses) {
            let last_seen = last_seen.remove(&id).flatten();
            if let ControlFlow::Break(e) = self
                .reply(&ServerFrame::Presence {
                    user_id: id,
                    status,
                    last_seen,
                })
                .await
            {
                return ControlFlow::Break(e);
            }
        }
        ControlFlow::Continue(())
    }
}
