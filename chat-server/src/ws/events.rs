//! A socket's channel events: `resume` sets the cursors and replays, live events go out at
//! `cursor + 1` (a gap refills from the store), membership changes from the control state are
//! applied in order, and a recheck re-reads everything after a lag or a bus outage.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;

use axum::extract::ws::Message;

use super::{Connection, Exit, Flow, REFILL_PAGE, SESSION_ENDED};
use crate::{
    hub::{Control, MembershipChange, Outbound, Published},
    model::{ChannelId, EventKind},
    protocol::{event_frame, ServerFrame},
};

impl Connection {
    /// Sets the cursors, replays what the client missed, and starts live delivery.
    pub(super) async fn resume(&mut self, requested: HashMap<ChannelId, i64>) -> Flow {
        let memberships = match self.app.memberships(&self.who.user_id).await {
            Ok(m) => m,
            Err(e) => return self.send_error(None, e.code(), e.to_string(), None).await,
        };
        for (channel, last_seq) in &memberships {
            let from = requested
                .get(channel)
                .map(|s| (*s).clamp(0, *last_seq))
                .unwrap_or(*last_seq);
            let cursor = if self.resumed {
                *self.cursors.get(channel).unwrap_or(&from)
            } else {
                from
            };
            self.cursors.insert(channel.clone(), cursor.min(from));
            self.app.hub.subscribe(&self.handle, channel);
        }
        self.resumed = true;
        for (channel, _) in &memberships {
            if let Err(e) = self.refill(channel).await {
                return ControlFlow::Break(e);
            }
        }
        let frame = ServerFrame::Resumed {
            channels: self.cursors.clone(),
        };
        self.reply(&frame).await
    }

    /// Sends every stored event of `channel` after its cursor (up to the user's leave when one
    /// is pending).
    pub(super) async fn refill(&mut self, channel: &str) -> Result<(), Exit> {
        loop {
            let Some(&cursor) = self.cursors.get(channel) else {
                return Ok(());
            };
            // The store is down: live delivery goes on; the next event retries the gap.
            let Ok(events) = self.app.events_after(channel, cursor, REFILL_PAGE).await else {
                return Ok(());
            };
            let n = events.len();
            for ev in events {
                let published = Published::new(&ev);
                debug_assert_eq!(published.frame.as_str(), event_frame(&ev));
                if !self.send_event(&published).await? {
                    return Ok(());
                }
            }
            if n < REFILL_PAGE {
                return Ok(());
            }
        }
    }

    pub(super) async fn on_outbound(&mut self, out: Outbound) -> Result<(), Exit> {
        match out {
            Outbound::Event(ev) => {
                // One cursor lookup per delivery (this runs for every socket of every event).
                // No cursor: not (or not yet) followed; a join refills from its own start.
                let Some(cursor) = self.cursors.get_mut(&ev.channel) else {
                    return Ok(());
                };
                if ev.seq <= *cursor {
                    return Ok(());
                }
                if ev.seq > *cursor + 1 {
                    // Boxed (rare, and large): see `Connection::run`.
                    return Box::pin(self.refill(&ev.channel)).await;
                }
                if withheld(&self.handle.control, &self.applying, &ev.channel, ev.seq) {
                    return Ok(());
                }
                // Moved before the write: a write that fails ends the connection, whose
                // cursors then only say which channels to unsubscribe.
                *cursor = ev.seq;
                self.write_past_cursor(&ev).await
            }
            Outbound::Ephemeral(frame) => self.feed(Message::Text(frame)).await,
            Outbound::Recheck(channel) => Box::pin(self.refill(&channel)).await,
        }
    }

    /// Applies what the control state recorded, in order: a revoked session ends the socket; a
    /// join announces the channel (`channel_added`, read from the store now) and refills it
    /// from the join; a leave lets the channel's events up to the `member_left` out, then says
    /// `channel_removed` and follows it no more. Changes wait for the `resume` (which reads the
    /// memberships itself); one whose store read fails stays first in line for the next turn.
    pub(super) async fn apply_control(&mut self) -> Result<(), Exit> {
        let control = self.handle.control.clone();
        if control.is_revoked() {
            return Err(SESSION_ENDED);
        }
        if !self.resumed {
            return Ok(());
        }
        self.applying.extend(control.take_changes());
        while let Some(change) = self.applying.front().cloned() {
            match change {
                MembershipChange::Added { channel_id, after } => {
                    let left_again = self.applying.iter().skip(1).any(|c| {
                        matches!(c, MembershipChange::Removed { channel_id: ch, .. } if *ch == channel_id)
                    });
                    if !left_again && !self.cursors.contains_key(&channel_id) {
                        let channel = match self
                            .app
                            .member_channel(&self.who.user_id, &channel_id)
                            .await
                        {
                            Ok(Some(c)) => c,
                            Ok(None) => {
                                self.applying.pop_front();
                                continue;
                            }
                            // Retried on the next turn (the next event, ping or heartbeat);
                            // meanwhile this channel's live events are refilled then.
                            Err(_) => return Ok(()),
                        };
                        self.cursors.insert(channel_id.clone(), after);
                        self.send_frame(&ServerFrame::ChannelAdded { channel })
                            .await?;
                        // What was stored between the join and the subscription is only there.
                        self.refill(&channel_id).await?;
                    }
                }
                MembershipChange::Removed {
                    channel_id,
                    left_seq,
                } => {
                    if self.cursors.get(&channel_id).is_some_and(|c| *c < left_seq) {
                        // Up to and including its own `member_left` (stops there: see
                        // `withheld`).
                        self.refill(&channel_id).await?;
                    }
                    self.cursors.remove(&channel_id);
                    self.send_frame(&ServerFrame::ChannelRemoved { channel_id })
                        .await?;
                }
            }
            self.applying.pop_front();
        }
        if control.take_recheck() {
            self.recheck(true).await?;
        }
        Ok(())
    }

    /// Re-reads from the store what the bus or the queue may have failed to bring: a session
    /// ended (possibly through another node) closes the socket; channels the user is no longer
    /// in are removed; with `add_new` (after an outage of the bus between nodes) channels joined
    /// meanwhile are added, followed from their current end like a `resume` without a position
    /// (a lagging socket leaves joins to its control state, which has their start); then every
    /// channel is refilled.
    pub(super) async fn recheck(&mut self, add_new: bool) -> Result<(), Exit> {
        if let Ok(false) = self.app.session_stands(&self.who.session_id).await {
            return Err(SESSION_ENDED);
        }
        if let Ok(memberships) = self.app.memberships(&self.who.user_id).await {
            let current: std::collections::HashSet<&ChannelId> =
                memberships.iter().map(|(c, _)| c).collect();
            let gone: Vec<ChannelId> = self
                .cursors
                .keys()
                .filter(|c| !current.contains(c))
                .cloned()
                .collect();
            for channel_id in gone {
                self.cursors.remove(&channel_id);
                self.app.hub.unsubscribe(self.handle.id, &channel_id);
                self.send_frame(&ServerFrame::ChannelRemoved { channel_id })
                    .await?;
            }
            for (channel_id, last_seq) in memberships.iter().filter(|_| add_new) {
                if self.cursors.contains_key(channel_id) {
                    continue;
                }
                let Ok(Some(channel)) =
                    self.app.member_channel(&self.who.user_id, channel_id).await
                else {
                    continue;
                };
                self.cursors.insert(channel_id.clone(), *last_seq);
                self.app.hub.subscribe(&self.handle, channel_id);
                self.send_frame(&ServerFrame::ChannelAdded { channel })
                    .await?;
            }
        }
        let channels: Vec<ChannelId> = self.cursors.keys().cloned().collect();
        for ch in channels {
            self.refill(&ch).await?;
        }
        Ok(())
    }

    /// Writes an event unless already sent; `false` when withheld (the user left the channel
    /// before it).
    pub(super) async fn send_event(&mut self, ev: &Published) -> Result<bool, Exit> {
        match self.cursors.get(&ev.channel) {
            Some(c) if ev.seq <= *c => return Ok(true),
            _ => {}
        }
        if withheld(&self.handle.control, &self.applying, &ev.channel, ev.seq) {
            return Ok(false);
        }
        match self.cursors.get_mut(&ev.channel) {
            Some(cursor) => *cursor = ev.seq,
            None => {
                self.cursors.insert(ev.channel.clone(), ev.seq);
            }
        }
        self.write_past_cursor(ev).await?;
        Ok(true)
    }

    /// Writes an event whose cursor has just been moved to it (not withheld).
    async fn write_past_cursor(&mut self, ev: &Published) -> Result<(), Exit> {
        self.feed(Message::Text(ev.frame.clone())).await?;
        self.events_unflushed += 1;
        if ev.kind == EventKind::Message
            && !ev.untracked
            && ev.author_id.as_deref() != Some(self.who.user_id.as_str())
        {
            self.note_written(ev);
        }
        Ok(())
    }

    /// Remembers a message written for its delivered watermark: a run of one channel's
    /// messages keeps one entry (its latest seq), so the delivery path clones no channel id.
    fn note_written(&mut self, ev: &Published) {
        match self.delivered_pending.last_mut() {
            Some((channel, seq)) if *channel == ev.channel => *seq = ev.seq,
            _ if self.app.receipts_enabled_cached(&ev.channel) == Some(false) => {}
            _ => self.delivered_pending.push((ev.channel.clone(), ev.seq)),
        }
    }
}

/// Whether a leave not yet fully applied forbids writing event `seq` of `channel`: recorded in
/// the control state, or taken from it and being applied. A function of the two fields, not of
/// the connection, so the live path can ask while it holds the channel's cursor.
fn withheld(
    control: &Control,
    applying: &VecDeque<MembershipChange>,
    channel: &str,
    seq: i64,
) -> bool {
    control.withholds(channel, seq)
        || applying.iter().any(|c| {
            matches!(c, MembershipChange::Removed { channel_id, left_seq }
                if channel_id == channel && seq > *left_seq)
        })
}
