//! A connection's sends in flight: up to [`WINDOW`] of them run at once, answered in the
//! order they arrived. When the window is full the connection stops reading its socket (the
//! client's writes back up in TCP: back-pressure), and keeps writing events and acks.
//!
//! Each send gets a [`SendTurn`] chained to the previous one, so the store sees one socket's
//! sends in the order they were sent (their seqs follow that order; see [`crate::sending`]).

use std::{future::Future, pin::Pin};

use futures_util::{stream::FuturesOrdered, StreamExt};
use tokio::sync::oneshot;

use crate::{
    error::ApiResult,
    model::{Ack, ChannelId, MessageId, UserId},
    sending::SendTurn,
    AppState,
};

/// Sends in flight per connection at most. Enough for a client's burst to share one group
/// commit; small enough that one socket cannot queue unbounded work in the store.
pub const WINDOW: usize = 64;

/// A send's reference (echoed in its ack or error) and its outcome.
pub type Answer = (Option<String>, ApiResult<Ack>);

type InFlight = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What a `send` frame asks for.
pub struct SendRequest {
    pub reference: Option<String>,
    pub channel: ChannelId,
    pub client_id: String,
    pub text: String,
    pub thread_root: Option<MessageId>,
}

#[derive(Default)]
pub struct Pipeline {
    /// Made by the first send: a socket that never sends (most of them) keeps no queue of
    /// futures (two allocations, and its bytes in the connection's task).
    inflight: Option<Box<FuturesOrdered<InFlight>>>,
    /// Resolves once the newest send in flight was queued at the store: the next one's wait.
    last_queued: Option<oneshot::Receiver<()>>,
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        self.inflight.as_ref().is_none_or(|f| f.is_empty())
    }

    /// No more sends are taken (the socket is not read) until one answers.
    pub fn is_full(&self) -> bool {
        self.inflight.as_ref().map_or(0, |f| f.len()) >= WINDOW
    }

    /// Starts a send; its answer comes from [`Pipeline::next`] after those of earlier sends.
    pub fn start(&mut self, app: &AppState, user: &UserId, req: SendRequest) {
        let (queued, next_wait) = oneshot::channel();
        let turn = SendTurn {
            wait: self.last_queued.replace(next_wait),
            queued: Some(queued),
        };
        let (app, user) = (app.clone(), user.clone());
        let inflight = self.inflight.get_or_insert_with(Box::default);
        inflight.push_back(Box::pin(async move {
            let r = app
                .send_message_in_turn(
                    &user,
                    &req.channel,
                    &req.client_id,
                    &req.text,
                    req.thread_root,
                    turn,
                )
                .await;
            (req.reference, r)
        }));
    }

    /// The oldest send's answer once it is done; pending forever when nothing is in flight
    /// (guard the `select!` branch with [`Pipeline::is_empty`]).
    pub async fn next(&mut self) -> Option<Answer> {
        match &mut self.inflight {
            Some(inflight) => inflight.next().await,
            None => None,
        }
    }

    /// Runs what is in flight to its end without answering (the socket is gone): every send
    /// that was stored is also published.
    pub async fn complete(&mut self) {
        while self.next().await.is_some() {}
    }
}
