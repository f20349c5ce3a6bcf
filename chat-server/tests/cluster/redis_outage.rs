//! Redis goes away and comes back.

use super::*;

/// Splits replayed events by channel.
fn by_channel(events: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for e in events {
        out.entry(e["channel"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
    }
    out
}

/// A reader of both channels: its socket and what it has seen, per channel.
struct Reader {
    ws: Ws,
    seen: HashMap<String, Vec<Value>>,
}

impl Reader {
    async fn connect(client: &Client, channels: [&str; 2]) -> Reader {
        let (ws, replay) = ws_from(client, &[(channels[0], 0), (channels[1], 0)]).await;
        Reader {
            ws,
            seen: by_channel(replay),
        }
    }

    /// Reads `ch`'s events until the messages with client ids `cids` have arrived.
    async fn sees(&mut self, ch: &str, cids: &[&str]) {
        let seen = self.seen.entry(ch.to_string()).or_default();
        collect_until(&mut self.ws, ch, seen, |ev| {
            let got = message_client_ids(ev);
            cids.iter().all(|c| got.contains(*c))
        })
        .await;
    }
}

/// Sends `cid` into `ch` on `ws`, asserts the ack and records it.
async fn send(ws: &mut Ws, ch: &str, cid: &str, acked: &mut HashMap<String, Value>) {
    let ack = ws.send_message(ch, cid, &format!("text of {cid}")).await;
    assert_eq!(ack["type"], "ack", "{cid}: {ack}");
    acked.insert(cid.to_string(), ack);
}

/// Both nodes answer `/readyz` with `status` within `within`, their `redis` field `ok` or not
/// as `redis_up` says, and the `fullslack_redis_up` gauge agrees.
async fn assert_redis_seen(cluster: &Cluster, status: &str, redis_up: bool, within: Duration) {
    for node in [&cluster.a, &cluster.b] {
        let ready = node.wait_ready_status(200, status, within).await;
        assert_eq!(ready["redis"] == "ok", redis_up, "{ready}");
        assert_eq!(ready["store"], "ok", "{ready}");
        assert_eq!(
            node.metric("fullslack_redis_up").await,
            Some(if redis_up { 1.0 } else { 0.0 }),
            "node {}",
            node.name
        );
    }
}

/// Stop Redis mid-conversation: each node keeps serving its own clients and says degraded;
/// once Redis is back on the same port cross-node delivery resumes and what was sent meanwhile
/// reaches the other node's clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_nodes_serving_locally_and_heals_afterwards() {
    let mut cluster = Cluster::start().await;
    let alice = user_on(&cluster.a, "alice").await;
    let carol = user_on(&cluster.a, "carol").await;
    let bob = user_on(&cluster.b, "bob").await;
    let dave = user_on(&cluster.b, "dave").await;
    // `general` is written on A during the outage (dave reads it on B), `random` on B (carol
    // reads it on A).
    let general = alice
        .create_channel("general", "private", &[&carol.id, &dave.id])
        .await;
    let random = bob
        .create_channel("random", "private", &[&dave.id, &carol.id])
        .await;
    let (mut alice_ws, _) = ws_from(&alice, &[]).await;
    let (mut bob_ws, _) = ws_from(&bob, &[]).await;
    let mut carol_on_a = Reader::connect(&carol, [&general, &random]).await;
    let mut dave_on_b = Reader::connect(&dave, [&general, &random]).await;
    let mut acked = HashMap::new();

    // Cross-node delivery before the outage.
    send(&mut alice_ws, &general, "g0", &mut acked).await;
    send(&mut bob_ws, &random, "r0", &mut acked).await;
    dave_on_b.sees(&general, &["g0"]).await;
    carol_on_a.sees(&random, &["r0"]).await;
    assert_redis_seen(&cluster, "ready", true, Duration::from_secs(10)).await;

    cluster.stop_redis().await;
    assert_redis_seen(&cluster, "degraded", false, Duration::from_secs(30)).await;
    // Each node serves its own clients: A's channel talk reaches carol on A, B's reaches dave.
    send(&mut alice_ws, &general, "g1", &mut acked).await;
    send(&mut alice_ws, &general, "g2", &mut acked).await;
    send(&mut bob_ws, &random, "r1", &mut acked).await;
    send(&mut bob_ws, &random, "r2", &mut acked).await;
    carol_on_a.sees(&general, &["g1", "g2"]).await;
    dave_on_b.sees(&random, &["r1", "r2"]).await;

    cluster.restart_redis().await;
    assert_redis_seen(&cluster, "ready", true, Duration::from_secs(30)).await;
    // What the other node's clients missed arrives…
    dave_on_b.sees(&general, &["g1", "g2"]).await;
    carol_on_a.sees(&random, &["r1", "r2"]).await;
    // …and live cross-node delivery is back.
    send(&mut alice_ws, &general, "g3", &mut acked).await;
    send(&mut bob_ws, &random, "r3", &mut acked).await;
    dave_on_b.sees(&general, &["g3"]).await;
    carol_on_a.sees(&random, &["r3"]).await;

    for (who, reader) in [("carol", &carol_on_a), ("dave", &dave_on_b)] {
        for ch in [&general, &random] {
            assert_gap_free(&reader.seen[ch.as_str()], 0, &format!("{who} in {ch}"));
        }
    }
    let (g, r): (HashMap<_, _>, HashMap<_, _>) =
        acked.into_iter().partition(|(cid, _)| cid.starts_with('g'));
    assert_acked_stored(&full_history(&dave, &general).await, &g, "general");
    assert_acked_stored(&full_history(&carol, &random).await, &r, "random");
    assert_one_redis_warning_per_node(&cluster);
}

/// One outage, one warning per node (not one per message, and no flapping after the
/// reconnect).
fn assert_one_redis_warning_per_node(cluster: &Cluster) {
    for node in [&cluster.a, &cluster.b] {
        let warnings: Vec<Value> = node
            .log_json()
            .into_iter()
            .filter(|l| l["level"] == "WARN" && l.to_string().to_lowercase().contains("redis"))
            .collect();
        assert_eq!(
            warnings.len(),
            1,
            "node {}: Redis warnings for one outage: {warnings:#?}",
            node.name
        );
    }
}
