//! Presence policy of the node: what a user's status is and who hears of its changes.
//!
//! On one node a user's status is this node's view (the hub's connections). With Redis the
//! node writes its own entry per user into a shared set ([`crate::cluster`] holds the raw
//! operations) and the status is the union of every node's entries: this module works out the
//! global change, announces it to local watchers and to the other nodes, stores the last-seen
//! time on going offline, and keeps the entries fresh ([`run_presence`]).

use crate::{
    model::{now, Presence, UserId},
    App, AppState,
};

/// Refreshes this node's presence entries and sweeps expired ones, every ttl/3.
pub(crate) async fn run_presence(app: AppState) {
    let Some(cluster) = app.cluster.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(cluster.presence_refresh_period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cluster.presence_refresh_requested() => {}
        }
        if !cluster.is_up() {
            continue;
        }
        app.refresh_presence().await;
    }
}

impl App {
    /// Presence of a user across nodes (this node's view while Redis is unreachable).
    pub async fn presence_of(&self, user_id: &str) -> Presence {
        self.presences(&[user_id.into()])
            .await
            .pop()
            .unwrap_or(Presence::Offline)
    }

    /// Presence of several users, in order.
    pub async fn presences(&self, user_ids: &[UserId]) -> Vec<Presence> {
        if let Some(c) = &self.cluster {
            if let Some(p) = c.presences(user_ids).await {
                return p;
            }
        }
        user_ids.iter().map(|u| self.hub.presence_of(u)).collect()
    }

    /// A user's presence on this node changed to `local` (connect, disconnect, away): work out
    /// the global change and tell watchers here and on other nodes.
    pub async fn local_presence_changed(&self, user_id: &str, local: Presence) {
        let global = match &self.cluster {
            Some(c) => match c.presence_set(user_id, local).await {
                Some((before, after)) if before == after => return,
                Some((_, after)) => Some(after),
                None => None,
            },
            None => None,
        };
        self.announce(user_id, global.unwrap_or(local), global.is_some())
            .await;
    }

    /// Tells watchers a user's new presence; going offline stores and carries the last seen.
    async fn announce(&self, user_id: &str, status: Presence, cluster_wide: bool) {
        let last_seen = if status == Presence::Offline {
            let seen = now();
            if let Err(e) = self.store.set_last_seen(user_id, seen).await {
                tracing::warn!(error = %e, "cannot store last seen");
            }
            Some(seen)
        } else {
            None
        };
        self.hub.announce_presence(user_id, status, last_seen);
        if cluster_wide {
            if let Some(c) = &self.cluster {
                c.publish_presence(user_id, status, last_seen);
            }
        }
    }

    /// Re-registers this node's users, removes the ones that left, sweeps crashed nodes' entries.
    async fn refresh_presence(&self) {
        let Some(c) = &self.cluster else {
            return;
        };
        let local = self.hub.connected_users();
        let gone: Vec<UserId> = c
            .registered_users()
            .into_iter()
            .filter(|u| !local.contains(u))
            .collect();
        let mut work: Vec<(UserId, Presence)> = local
            .into_iter()
            .map(|u| {
                let p = self.hub.presence_of(&u);
                (u, p)
            })
            .collect();
        work.extend(gone.into_iter().map(|u| (u, Presence::Offline)));
        for chunk in work.chunks(128) {
            let results =
                futures_util::future::join_all(chunk.iter().map(|(u, p)| c.presence_set(u, *p)))
                    .await;
            for ((user, _), r) in chunk.iter().zip(results) {
                match r {
                    Some((before, after)) if before != after => {
                        self.announce(user, after, true).await;
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }
        if let Some(changed) = c.sweep().await {
            for (user, status) in changed {
                tracing::debug!(user = %user, ?status, "presence entry expired (node gone)");
                self.announce(&user, status, true).await;
            }
        }
    }

    /// Tells this node's watchers of `users` their presence where it differs from what they
    /// were last told (run once the node's presence subscriptions are in place).
    pub(crate) async fn presence_resync(&self, users: Vec<UserId>) {
        let statuses = self.presences(&users).await;
        for (user, status) in users.iter().zip(statuses) {
            if self.hub.told(user).is_none_or(|told| told == status) {
                continue;
            }
            let last_seen = match status {
                Presence::Offline => self
                    .store
                    .user(user)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|u| u.last_seen),
                _ => None,
            };
            self.hub.announce_presence(user, status, last_seen);
        }
    }
}
