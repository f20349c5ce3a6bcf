//! One sequence, many writers on two nodes.

use super::*;

const SENDERS: usize = 8;
const PER_SENDER: usize = 20;

/// 8 senders, 4 on each node, into one channel at once: every client sees the channel's events
/// numbered 1, 2, 3… with no gap and no repeat, all the same; every acked message is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_both_nodes_share_one_gap_free_sequence() {
    let cluster = Cluster::start().await;
    let mut clients = Vec::new();
    for i in 0..SENDERS {
        let node = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        clients.push(user_on(node, &format!("sender{i}")).await);
    }
    let others: Vec<&str> = clients[1..].iter().map(|c| c.id.as_str()).collect();
    let ch = clients[0].create_channel("busy", "private", &others).await;

    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        tasks.spawn(send_and_watch(i, client, ch.clone()));
    }
    let mut views = Vec::new();
    let mut acked = HashMap::new();
    let mut reader = None;
    while let Some(r) = tasks.join_next().await {
        let (i, client, events, a) = r.expect("sender task");
        acked.extend(a);
        views.push((i, events));
        reader.get_or_insert(client);
    }
    assert_eq!(acked.len(), SENDERS * PER_SENDER);
    let acked_seqs: HashSet<i64> = acked.values().map(|a| a["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        acked_seqs.len(),
        acked.len(),
        "two sends were acked with one seq"
    );
    assert_views_agree(&views, &acked);

    // The store holds each acked message once, under its acked seq, seen from either node.
    let reader = reader.unwrap();
    for node in [&cluster.a, &cluster.b] {
        let history = full_history(&on_node(&reader, node), &ch).await;
        assert_eq!(history.len(), SENDERS * PER_SENDER, "node {}", node.name);
        assert_acked_stored(&history, &acked, &format!("history via node {}", node.name));
    }
}

/// Sender `i`: from seq 0 (the replay and the live events together are the channel's full
/// log) sends its messages, then watches until every sender's messages arrived, gap-free.
/// Returns `i`, the client, what it saw and its acks by client id.
async fn send_and_watch(
    i: usize,
    client: Client,
    ch: String,
) -> (usize, Client, Vec<Value>, HashMap<String, Value>) {
    let (mut ws, mut events) = ws_from(&client, &[(&ch, 0)]).await;
    let mut acked = HashMap::new();
    for n in 0..PER_SENDER {
        let cid = format!("s{i}-{n}");
        let ack = ws
            .send_message(&ch, &cid, &format!("message {n} from {i}"))
            .await;
        assert_eq!(ack["type"], "ack", "sender {i}: {ack}");
        assert_eq!(ack["duplicate"], false);
        acked.insert(cid, ack);
    }
    collect_until(&mut ws, &ch, &mut events, |ev| {
        message_client_ids(ev).len() == SENDERS * PER_SENDER
    })
    .await;
    assert_gap_free(&events, 0, &format!("sender {i}"));
    (i, client, events, acked)
}

/// All views agree event by event (each may have seen a few receipts more than another), and
/// message events carry the acked seqs.
fn assert_views_agree(views: &[(usize, Vec<Value>)], acked: &HashMap<String, Value>) {
    let key = |e: &Value| {
        (
            e["seq"].as_i64(),
            e["kind"].clone(),
            e["data"]["id"].clone(),
        )
    };
    let (i0, first) = &views[0];
    for (i, view) in &views[1..] {
        let n = first.len().min(view.len());
        for k in 0..n {
            assert_eq!(
                key(&first[k]),
                key(&view[k]),
                "sender {i0} and sender {i} disagree at {k}"
            );
        }
    }
    for e in first.iter().filter(|e| e["kind"] == "message") {
        let cid = e["data"]["client_id"].as_str().unwrap();
        assert_eq!(e["seq"], acked[cid]["seq"], "{cid}");
    }
}
