//! History pages, search, and the operations endpoints.

use super::*;

#[tokio::test]
async fn history_pages_both_ways_and_search_finds_words() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.create_channel("log", "public", &[]).await;
    let mut a = alice.ws().await;
    for i in 0..25 {
        a.send_message(
            &ch,
            &format!("h{i}"),
            &format!("entry number {i} banana{}", i % 5),
        )
        .await;
    }
    let page = alice
        .ok_get(&format!("/api/channels/{ch}/messages?limit=10"))
        .await;
    let texts = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&page).first().unwrap(), "entry number 15 banana0");
    assert_eq!(page["has_more"], true);
    let oldest_seq = page["messages"][0]["seq"].as_i64().unwrap();
    let older = alice
        .ok_get(&format!(
            "/api/channels/{ch}/messages?before={oldest_seq}&limit=10"
        ))
        .await;
    assert_eq!(texts(&older).first().unwrap(), "entry number 5 banana0");
    let first = alice
        .ok_get(&format!("/api/channels/{ch}/messages?after=0&limit=5"))
        .await;
    assert_eq!(
        texts(&first),
        (0..5)
            .map(|i| format!("entry number {i} banana{i}"))
            .collect::<Vec<_>>()
    );
    let found = alice.ok_get("/api/search?q=banana3").await;
    assert_eq!(found["results"].as_array().unwrap().len(), 5);
    let found = alice.ok_get("/api/search?q=entry%20number%2012").await;
    assert_eq!(found["results"][0]["text"], "entry number 12 banana2");
    server.stop().await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let get = |p: &str| http.get(format!("{}{p}", server.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready: Value = get("/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(ready["store"], "ok");
    let alice = Client::register(&server, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut a = alice.ws().await;
    a.send_message(&ch, "x", "count me").await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fullslack_ws_connections 1"), "{metrics}");
    assert!(
        metrics.contains("fullslack_messages_sent_total 1"),
        "{metrics}"
    );
    let doc: Value = get("/api/openapi.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/channels/{id}/messages"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Message"].is_object());
    server.stop().await;
}
