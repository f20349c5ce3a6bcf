//! Who may see what: tokens (tampered, expired, revoked) and non-members of private channels and DMs.

use super::*;

#[tokio::test]
async fn tampered_expired_missing_and_revoked_tokens_are_refused() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let http = reqwest::Client::new();
    let me = |token: Option<String>| {
        let req = http.get(format!("{}/api/me", server.base));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(me(Some(alice.token.clone())).await, 200);
    assert_eq!(me(None).await, 401);
    let mut parts: Vec<String> = alice.token.split('.').map(str::to_string).collect();
    // Claim to be someone else: the signature no longer matches.
    parts[1] = parts[1].chars().rev().collect();
    assert_eq!(me(Some(parts.join("."))).await, 401);
    // Correctly signed but expired.
    let claims = json!({"sub": alice.id, "sid": "x", "iat": 1, "exp": 2});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(me(Some(expired.clone())).await, 401);

    // The WebSocket handshake refuses the same way, before any upgrade.
    for bad in [expired, "garbage".to_string()] {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                server.ws_url(),
            )
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {bad}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401);
            }
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }

    // Logout revokes the session at once, and closes its sockets.
    let mut ws = alice.ws().await;
    let (s, _) = alice.post("/api/auth/logout", json!({})).await;
    assert_eq!(s, 204);
    assert_eq!(me(Some(alice.token.clone())).await, 401);
    let closed = ws.next_where(|f| f["type"] == "__close").await;
    assert_eq!(closed["code"], 1008);
    server.stop().await;
}

#[tokio::test]
async fn non_members_see_nothing_of_private_channels_and_dms() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let mallory = Client::register(&server, "mallory").await;
    let secret = alice.create_channel("secret", "private", &[&bob.id]).await;
    let dm = alice.dm(&[&bob.id]).await;
    let mut a = alice.ws().await;
    a.send_message(&secret, "s1", "the plan is hidden").await;
    a.send_message(&dm, "d1", "just between us").await;

    let mut m = Ws::connect(&mallory.ws_url, &mallory.token).await;
    // Asking to resume someone else's channels yields nothing from them.
    let replay = m
        .resume(HashMap::from([(secret.clone(), 0), (dm.clone(), 0)]))
        .await;
    assert!(replay.is_empty(), "{replay:?}");
    for ch in [&secret, &dm] {
        for path in ["", "/messages", "/events", "/members"] {
            let (s, body) = mallory.get(&format!("/api/channels/{ch}{path}")).await;
            assert_eq!(s, 404, "{path}: {body}");
        }
        let (s, _) = mallory
            .post(&format!("/api/channels/{ch}/join"), json!({}))
            .await;
        assert_eq!(s, 404);
        let (s, _) = mallory
            .post(
                &format!("/api/channels/{ch}/members"),
                json!({"user_id": mallory.id}),
            )
            .await;
        assert_eq!(s, 404);
        let err = m.send_message(ch, &format!("m-{ch}"), "let me in").await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("not_found"))
        );
        m.send(json!({"type": "typing", "channel": ch})).await;
        assert_eq!(
            m.next_where(|f| f["type"] == "error").await["code"],
            "not_found"
        );
    }
    let found = mallory.ok_get("/api/search?q=hidden").await;
    assert!(found["results"].as_array().unwrap().is_empty());
    let found = bob.ok_get("/api/search?q=hidden").await;
    assert_eq!(found["results"][0]["text"], "the plan is hidden");
    // Mallory's socket never received anything from those channels.
    let frames = m.drain(Duration::from_millis(300)).await;
    assert!(frames.iter().all(|f| f["type"] != "event"), "{frames:?}");
    server.stop().await;
}
