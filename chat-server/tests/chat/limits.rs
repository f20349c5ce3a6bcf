//! Rate limits: sends, and sign-ins per address, per name and behind trusted proxies.

use super::*;

#[tokio::test]
async fn sends_beyond_the_rate_limit_are_refused_with_retry_after() {
    let dir = common::tempdir();
    let server = TestServer::start_with(dir, |s| {
        s.rate_limit.send_per_sec = 1;
        s.rate_limit.send_burst = 3;
    })
    .await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.dm(&[]).await;
    let mut a = alice.ws().await;
    for i in 0..3 {
        assert_eq!(
            a.send_message(&ch, &format!("ok{i}"), "within the burst")
                .await["type"],
            "ack"
        );
    }
    let err = a.send_message(&ch, "over", "one too many").await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("rate_limited"))
    );
    assert!(err["retry_after_ms"].as_u64().unwrap() > 0);
    let resp = alice
        .http
        .post(format!("{}/api/channels/{ch}/messages", alice.base))
        .bearer_auth(&alice.token)
        .json(&json!({"text": "rest too", "client_id": "rest-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    // Nothing refused was stored.
    let h = alice.ok_get(&format!("/api/channels/{ch}/messages")).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 3);
    server.stop().await;
}

/// A sign-up or sign-in (`route`) with `password`, from `client` as a proxy would forward it
/// (`X-Forwarded-For`); the HTTP status.
async fn sign_in_from(
    server: &TestServer,
    route: &str,
    client: Option<&str>,
    username: &str,
    password: &str,
) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/auth/{route}", server.base))
        .json(&json!({"username": username, "password": password}));
    if let Some(ip) = client {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap().status().as_u16()
}

// Every bucket below refills at one token a minute: no test here races a refill.

#[tokio::test]
async fn auth_attempts_are_rate_limited() {
    let dir = common::tempdir();
    let server = TestServer::start_with(dir, |s| {
        s.rate_limit.auth_per_min = 1;
        s.rate_limit.auth_burst = 3;
        s.rate_limit.auth_addr_per_min = 1;
        s.rate_limit.auth_addr_burst = 6;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(sign_in_from(&server, "login", None, "nobody", "wrong password").await);
    }
    // Per address and name.
    assert_eq!(statuses, [401, 401, 401, 429]);
    // Per address, whatever the name (sign-ups included): 4 attempts spent, 2 left.
    let mut statuses = Vec::new();
    for name in ["n1", "n2", "n3"] {
        statuses.push(sign_in_from(&server, "login", None, name, "wrong password").await);
    }
    assert_eq!(statuses, [401, 401, 429]);
    assert_eq!(
        sign_in_from(&server, "register", None, "newbie", "long enough password").await,
        429
    );
    server.stop().await;
}

/// Issue 11 item 7: five wrong passwords from any five addresses used to lock the owner out
/// (the per-name bucket answered 429 to the right password too).
#[tokio::test]
async fn a_stranger_cannot_lock_a_user_out() {
    let dir = common::tempdir();
    let server = TestServer::start_with(dir, |s| {
        // The test client is the proxy: its X-Forwarded-For picks the client's address.
        s.trusted_proxies = fullslack_chat::proxy::TrustedProxies::parse("127.0.0.1").unwrap();
        s.rate_limit.auth_per_min = 1;
        s.rate_limit.auth_burst = 3;
        s.rate_limit.auth_addr_per_min = 1;
        s.rate_limit.auth_addr_burst = 5;
        s.rate_limit.auth_name_burst = 5;
        s.rate_limit.auth_name_max_delay_ms = 300;
    })
    .await;
    let right = "correct horse battery";
    assert_eq!(
        sign_in_from(&server, "register", Some("10.0.0.1"), "alice", right).await,
        201
    );
    // A stranger guesses from eight addresses: each gets three tries at alice, then 429.
    for a in 0..8 {
        let ip = format!("10.1.0.{a}");
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(sign_in_from(&server, "login", Some(&ip), "Alice", "guess guess").await);
        }
        assert_eq!(statuses, [401, 401, 401, 429], "from {ip}");
    }
    // The address's own budget covers other names too (4 of 5 spent).
    assert_eq!(
        sign_in_from(&server, "login", Some("10.1.0.0"), "bob", "guess guess").await,
        401
    );
    assert_eq!(
        sign_in_from(&server, "login", Some("10.1.0.0"), "carol", "guess guess").await,
        429
    );
    // 24 failures on alice from anywhere slow her sign-ins down but never refuse them: the
    // owner, from a new address, signs in with the right password.
    assert_eq!(
        sign_in_from(&server, "login", Some("192.0.2.55"), "alice", right).await,
        200
    );
    // An address that spent its own budget stays throttled, whoever uses it.
    assert_eq!(
        sign_in_from(&server, "login", Some("10.1.0.0"), "alice", right).await,
        429
    );
    server.stop().await;
}

/// Behind no configured proxy, `X-Forwarded-For` is the client's own claim: ignored, so a
/// client cannot escape its budget by inventing addresses.
#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    for trusted in ["", "10.0.0.0/8"] {
        let dir = common::tempdir();
        let server = TestServer::start_with(dir, |s| {
            s.trusted_proxies = fullslack_chat::proxy::TrustedProxies::parse(trusted).unwrap();
            s.rate_limit.auth_per_min = 1;
            s.rate_limit.auth_burst = 2;
        })
        .await;
        let mut statuses = Vec::new();
        for a in 0..3 {
            let ip = format!("198.51.100.{a}");
            statuses.push(sign_in_from(&server, "login", Some(&ip), "alice", "guess guess").await);
        }
        assert_eq!(statuses, [401, 401, 429], "trusted: {trusted:?}");
        server.stop().await;
    }
}
