//! Sending a message: the checks, the durable write, then publishing, with the ack last.
//!
//! A WebSocket connection keeps several sends in flight (see `ws::pipeline`). Its sends still
//! take their seqs in the order they were sent: each one waits for its [`SendTurn`], i.e. for
//! the previous send of the same connection to be queued at the store, before queuing its own
//! write. On the SQLite driver a write is queued on its first poll and the writer commits in
//! queue order, so the next send starts as soon as the previous one is queued and many sends
//! of one socket share one group commit. On a store without that property
//! ([`crate::store::Store::writes_commit_in_poll_order`] is `false`) the turn passes only when
//! the previous send has answered: one at a time, as before.

use std::{future::Future, pin::Pin, sync::Arc, time::Instant};

use futures_util::future::{maybe_done, MaybeDone};
use tokio::sync::oneshot;

use crate::{
    error::ApiResult,
    model::{new_id, now, Ack, MessageId, UserId},
    service::{validate_client_id, ChannelMeta},
    store::NewMessage,
    App,
};

/// A send's place in its connection's order: `wait` resolves once the previous send is queued
/// (or gave up), and dropping `queued` tells the next send that this one is.
#[derive(Default)]
pub struct SendTurn {
    pub wait: Option<oneshot::Receiver<()>>,
    pub queued: Option<oneshot::Sender<()>>,
}

/// Polls a store write once, now: on a store whose writes commit in poll order this queues it.
async fn queue<F: Future + Unpin>(write: F) -> MaybeDone<F> {
    let mut write = maybe_done(write);
    let _ = futures_util::poll!(Pin::new(&mut write));
    write
}

/// Drives a queued write to its end and takes its answer.
async fn finish<F: Future + Unpin>(mut write: MaybeDone<F>) -> F::Output {
    Pin::new(&mut write).await;
    Pin::new(&mut write)
        .take_output()
        .expect("a finished write has its output")
}

impl App {
    /// What a send must pass before anything is written: rate limit, well-formed, member;
    /// the channel's routing facts and the ids of the users mentioned.
    async fn check_send(
        &self,
        user_id: &str,
        channel_id: &str,
        client_id: &str,
        text: &str,
    ) -> ApiResult<(Arc<ChannelMeta>, Vec<UserId>)> {
        self.limit_send(user_id).await?;
        validate_client_id(client_id)?;
        self.validate_text(text)?;
        let meta = self.require_member(user_id, channel_id).await?;
        let mentions = self.resolve_mentions(text).await?;
        Ok((meta, mentions))
    }

    /// A send on its own (REST): no other send to keep in order with.
    pub async fn send_message(
        &self,
        user_id: &str,
        channel_id: &str,
        client_id: &str,
        text: &str,
        thread_root: Option<MessageId>,
    ) -> ApiResult<Ack> {
        let turn = SendTurn::default();
        self.send_message_in_turn(user_id, channel_id, client_id, text, thread_root, turn)
            .await
    }

    /// Checks, stores and publishes a message, its write queued in `turn` (module docs). The
    /// message's commit also moves the author's watermarks to it (writing into a conversation
    /// means having read it); where the channel tracks receipts, the channel's next flush of
    /// receipts says so ([`App::note_sent`]): one event for the sends and deliveries of a flush,
    /// not a receipt event per send, each to every member.
    pub async fn send_message_in_turn(
        &self,
        user_id: &str,
        channel_id: &str,
        client_id: &str,
        text: &str,
        thread_root: Option<MessageId>,
        mut turn: SendTurn,
    ) -> ApiResult<Ack> {
        let started = Instant::now();
        // The checks write nothing: they run before the turn comes.
        let checked = self.check_send(user_id, channel_id, client_id, text).await;
        if let Some(wait) = turn.wait.take() {
            // Waited for even when refused: the next send's turn (dropping `turn.queued`)
            // must not come before the previous one's.
            let _ = wait.await;
        }
        let (meta, mentions) = checked?;
        let append = self.store.append_message(NewMessage {
            id: new_id(),
            channel_id: channel_id.into(),
            author_id: user_id.into(),
            client_id: client_id.to_string(),
            text: text.to_string(),
            thread_root,
            mentions,
            created_at: now(),
        });
        let stored = if self.store.writes_commit_in_poll_order() {
            // Queued now: the connection's next send may queue its own write behind it.
            let append = queue(append).await;
            drop(turn.queued.take());
            finish(append).await
        } else {
            // The next send starts when this one has answered (`turn` dropped on return).
            append.await
        };
        let (msg, event) = stored.map_err(|e| self.write_error(channel_id, &meta, e))?;
        let duplicate = event.is_none();
        if let Some(ev) = event {
            self.metrics.messages_sent.inc();
            // Told to the other members, if any (a channel of one has nobody to tell).
            if meta.members.len() > 1 && self.tracks_receipts(&meta) {
                self.note_sent(channel_id, user_id);
            }
            self.publish(ev).await;
        }
        self.metrics
            .send_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Ack {
            channel: msg.channel_id,
            seq: msg.seq,
            message_id: msg.id,
            client_id: msg.client_id,
            duplicate,
        })
    }
}
