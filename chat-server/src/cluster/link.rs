//! The subscriber connection: one per node. (Re)connects with backoff, keeps the
//! subscriptions equal to what the hub needs, tells the node when it comes (back) up and
//! when a subscription took, and hands every message to the node's [`BusHandler`].

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{BusHandler, Cluster, MEMBERS_TOPIC};
use crate::{
    model::UserId,
    topics::{Interest, CHANNEL_TOPIC, PRESENCE_TOPIC},
};

/// Bound on connecting (and subscribing) the link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

fn apply(desired: &mut HashSet<String>, i: Interest) {
    match i {
        Interest::Subscribe(t) => {
            desired.insert(t);
        }
        Interest::Unsubscribe(t) => {
            desired.remove(&t);
        }
    }
}

/// The subscriber connection: (re)connects with backoff, keeps the subscriptions equal to
/// what the hub needs, and hands every message to the node's [`BusHandler`].
pub(super) async fn run_link(
    cluster: Arc<Cluster>,
    handler: Arc<dyn BusHandler>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
) {
    let mut desired: HashSet<String> = HashSet::from([MEMBERS_TOPIC.to_string()]);
    let mut backoff = BACKOFF_MIN;
    loop {
        while let Ok(i) = interest.try_recv() {
            apply(&mut desired, i);
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let pubsub = cluster.client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            let topics: Vec<String> = desired.iter().cloned().collect();
            for chunk in topics.chunks(1000) {
                sink.subscribe(chunk).await?;
            }
            // The command connection may still hold the socket of before the outage: have it
            // reconnect now, so the first publishes after "up" are not lost on it.
            let mut conn = cluster.conn.clone();
            let mut ping = redis::cmd("PING").query_async::<String>(&mut conn).await;
            if ping.is_err() {
                ping = redis::cmd("PING").query_async::<String>(&mut conn).await;
            }
            ping?;
            Ok::<_, redis::RedisError>((sink, stream))
        })
        .await;
        let (mut sink, mut stream) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                cluster.set_down(e.to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(_) => {
                cluster.set_down("connecting to redis timed out".to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        let mut subscribed = desired.clone();
        cluster.set_up();
        handler.healed();
        let reason = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => {
                        if let Some(message) = cluster.decode(m.get_payload_bytes()) {
                            handler.on_message(message);
                        }
                    }
                    None => break "redis closed the subscriber connection".to_string(),
                },
                Some(i) = interest.recv() => {
                    apply(&mut desired, i);
                    while let Ok(i) = interest.try_recv() {
                        apply(&mut desired, i);
                    }
                    let add: Vec<String> = desired.difference(&subscribed).cloned().collect();
                    let drop: Vec<String> = subscribed.difference(&desired).cloned().collect();
                    if !add.is_empty() {
                        if let Err(e) = sink.subscribe(&add).await {
                            break e.to_string();
                        }
                        let mut watched = Vec::new();
                        for t in &add {
                            if let Some(ch) = t.strip_prefix(CHANNEL_TOPIC) {
                                // Events published before the SUBSCRIBE took are in the store.
                                handler.channel_subscribed(ch);
                            } else if let Some(user) = t.strip_prefix(PRESENCE_TOPIC) {
                                watched.push(UserId::from(user));
                            }
                        }
                        if !watched.is_empty() {
                            // A change just before the SUBSCRIBE took was not heard: compare.
                            handler.clone().presence_subscribed(watched);
                        }
                        subscribed.extend(add);
                    }
                    if !drop.is_empty() {
                        if let Err(e) = sink.unsubscribe(&drop).await {
                            break e.to_string();
                        }
                        for t in &drop {
                            subscribed.remove(t);
                        }
                    }
                }
                _ = cluster.kick.notified() => {
                    // A command saw the connection drop: make sure the link is still alive.
                    // (In subscribed mode PING answers ["pong", ""], not a string.)
                    let ping = tokio::time::timeout(Duration::from_secs(1), sink.ping::<redis::Value>()).await;
                    match ping {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break "redis did not answer PING within 1 s".to_string(),
                    }
                }
            }
        };
        cluster.set_down(reason);
    }
}
