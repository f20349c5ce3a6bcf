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
    store::{NewMessage, Watermark},
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
    /// author's read watermark moves in the same group commit as the message when the channel
    /// tracks receipts (writing into a conversation means having read it); its `receipt`
    /// (when the watermark actually moved) is published before the message, in seq order.
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
        let receipts = meta.members.len() <= self.settings.realtime.receipts_max_members;
        let read = receipts.then(|| {
            self.store.advance_watermark(
                channel_id,
                user_id,
                Watermark::Read(i64::MAX),
                true,
                now(),
            )
        });
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
        let (read, stored) = if self.store.writes_commit_in_poll_order() {
            // Both queued now, the watermark first: one commit for the two.
            let read = match read {
                Some(w) => Some(queue(w).await),
                None => None,
            };
            let append = queue(append).await;
            drop(turn.queued.take());
            let read = match read {
                Some(w) => Some(finish(w).await),
                None => None,
            };
            (read, finish(append).await)
        } else {
            // One write after the other, as the store needs; a refused watermark refuses the
            // send before anything of it is stored.
            let read = match read {
                Some(w) => Some(Ok(w
                    .await
                    .map_err(|e| self.write_error(channel_id, &meta, e))?)),
                None => None,
            };
            (read, append.await)
        };
        match read {
            Some(Ok(ev)) => {
                self.publish_if_any(ev).await;
            }
            // Refused for the same reason the message is (not a member): answered below.
            Some(Err(e)) if stored.is_err() => tracing::debug!(error = %e, "read watermark"),
            // The message is stored whatever became of the receipt (a hint): it is answered.
            Some(Err(e)) => tracing::warn!(error = %e, "author's read watermark not stored"),
            None => {}
        }
        let (msg, event) = stored.map_err(|e| self.write_error(channel_id, &meta, e))?;
        let duplicate = event.is_none();
        if let Some(ev) = event {
            self.metrics.messages_sent.inc();
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
