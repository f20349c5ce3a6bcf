//! The harness itself: Redis and SecantusDB come back on the same port.

use super::*;

/// The harness itself: Redis comes back on the same port, empty.
#[test]
fn redis_restarts_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert!(redis.is_running());
    redis.stop();
    assert!(!redis.is_running());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a stopped Redis refuses connections"
    );
    redis.restart();
    assert_eq!(redis.port(), port);
    assert!(redis.is_running());
}

/// The harness itself: SecantusDB comes back on the same port with the same data, also after
/// a SIGKILL (what the store-down test relies on to check every acknowledged write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_restarts_on_the_same_port_and_data_after_a_kill() {
    use mongodb::bson::{doc, Document};
    let mut mongo = tokio::task::spawn_blocking(MongoServer::start)
        .await
        .unwrap();
    let url = mongo.url("harness");
    let opts = |url: &str| {
        let url = url.to_string();
        async move {
            let mut o = mongodb::options::ClientOptions::parse(&url).await.unwrap();
            o.server_selection_timeout = Some(Duration::from_secs(10));
            mongodb::Client::with_options(o).unwrap()
        }
    };
    let client = opts(&url).await;
    let coll = client.database("harness").collection::<Document>("t");
    coll.insert_one(doc! {"_id": 1, "v": "kept"}).await.unwrap();
    drop(coll);
    client.shutdown().await;

    let port = mongo.port();
    let mongo = tokio::task::spawn_blocking(move || {
        mongo.kill();
        assert!(!mongo.is_running());
        mongo.restart();
        mongo
    })
    .await
    .unwrap();
    assert_eq!(mongo.port(), port);
    let client = opts(&url).await;
    let coll = client.database("harness").collection::<Document>("t");
    let got = coll.find_one(doc! {"_id": 1}).await.unwrap();
    assert_eq!(
        got.and_then(|d| d.get_str("v").ok().map(str::to_string)),
        Some("kept".to_string()),
        "log: {}",
        std::fs::read_to_string(mongo.log_path()).unwrap_or_default()
    );
    drop(coll);
    client.shutdown().await;
    // A clean stop (SIGTERM) ends the process too.
    tokio::task::spawn_blocking(move || {
        let mut mongo = mongo;
        mongo.stop();
        assert!(!mongo.is_running());
    })
    .await
    .unwrap();
}
