//! The edges of the HTTP and WebSocket surface, against the real server: malformed query
//! strings and wrong methods answer in the documented JSON error shape, every answer carries
//! `X-Content-Type-Options: nosniff`, display names refuse control and bidi override
//! characters, `presence_subscribe` is bounded per frame, and the OpenAPI document lists exactly
//! the routes the router serves and docs/protocol.md documents; `/metrics` carries the embedded
//! store's group commits.

mod common;

use std::collections::BTreeSet;

use common::{Client, TestServer};
use serde_json::{json, Value};

/// Asserts the documented error shape `{"error": {"code", "message"}}` and returns the message.
fn error_message(body: &Value, code: &str) -> String {
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a message: {body}"))
        .to_string()
}

#[tokio::test]
async fn bad_query_strings_answer_400_in_the_json_error_shape() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let ch = alice.create_channel("general", "public", &[]).await;
    for path in [
        format!("/api/channels/{ch}/messages?limit=abc"),
        format!("/api/channels/{ch}/messages?before=-x"),
        format!("/api/channels/{ch}/events?after=1.5"),
        "/api/search?q=hello&limit=-1".to_string(),
        "/api/search".to_string(),
    ] {
        let resp = alice
            .http
            .get(format!("{}{path}", server.base))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert!(
            resp.headers()[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let body: Value = resp.json().await.unwrap();
        let message = error_message(&body, "bad_request");
        assert!(!message.is_empty(), "{path}");
    }
    let (status, body) = alice
        .get(&format!("/api/channels/{ch}/messages?limit=abc"))
        .await;
    assert_eq!(status, 400);
    assert!(
        error_message(&body, "bad_request").contains("limit"),
        "the message names the field: {body}"
    );
    // Good ones still work.
    alice
        .ok_get(&format!("/api/channels/{ch}/messages?limit=5"))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_method_answers_405_in_the_json_error_shape_with_allow() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/api/channels", "GET,HEAD,POST"),
        (reqwest::Method::GET, "/api/auth/login", "POST"),
        (reqwest::Method::PUT, "/healthz", "GET,HEAD"),
        (reqwest::Method::POST, "/", "GET,HEAD"),
    ] {
        let resp = alice
            .http
            .request(method.clone(), format!("{}{path}", server.base))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        let mut allowed: Vec<String> = resp.headers()[reqwest::header::ALLOW]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_string())
            .collect();
        allowed.sort();
        assert_eq!(allowed.join(","), allow, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        error_message(&body, "method_not_allowed");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_answer_says_nosniff() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let http = reqwest::Client::new();
    let requests = [
        (reqwest::Method::GET, "/api/me", true),
        (reqwest::Method::GET, "/api/me", false), // 401
        (reqwest::Method::GET, "/api/users", true),
        (reqwest::Method::GET, "/api/nothing-here", true), // 404
        (reqwest::Method::DELETE, "/api/me", true),        // 405
        (reqwest::Method::GET, "/healthz", false),
        (reqwest::Method::GET, "/readyz", false),
        (reqwest::Method::GET, "/metrics", false),
        (reqwest::Method::GET, "/api/openapi.json", false),
        (reqwest::Method::GET, "/", false),
    ];
    for (method, path, signed_in) in requests {
        let mut req = http.request(method.clone(), format!("{}{path}", server.base));
        if signed_in {
            req = req.bearer_auth(&alice.token);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap().to_string()),
            Some("nosniff".to_string()),
            "{method} {path} ({})",
            resp.status()
        );
        assert_eq!(
            resp.headers()
                .get_all("x-content-type-options")
                .iter()
                .count(),
            1,
            "once"
        );
    }
    // A bad login (the 401 path of the auth routes) too.
    let resp = http
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"username": "alice", "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    server.stop().await;
}

#[tokio::test]
async fn display_names_with_control_or_bidi_override_characters_are_refused() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let bad = [
        "nul\u{0}byte",
        "line\nbreak",
        "\u{202E}evil",
        "a\u{202A}b",
        "a\u{202D}b",
        "a\u{2066}b",
        "a\u{2069}b",
        "esc\u{1b}[31m",
    ];
    for (i, name) in bad.iter().enumerate() {
        let resp = http
            .post(format!("{}/api/auth/register", server.base))
            .json(
                &json!({"username": format!("user{i}"), "password": "correct horse battery",
                          "display_name": name}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{name:?}");
        let body: Value = resp.json().await.unwrap();
        let message = error_message(&body, "bad_request");
        assert!(message.starts_with("display_name:"), "{name:?}: {message}");
    }
    // Nothing was created for them: the names are still free.
    let ok = http
        .post(format!("{}/api/auth/register", server.base))
        .json(
            &json!({"username": "user0", "password": "correct horse battery",
                      "display_name": "Zoë (she/her) 🎉 مرحبا"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["user"]["display_name"], "Zoë (she/her) 🎉 مرحبا");
    server.stop().await;
}

#[tokio::test]
async fn presence_subscribe_is_bounded_per_frame_and_skips_unknown_ids() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    let bob = Client::register(&server, "bob").await;
    let carol = Client::register(&server, "carol").await;
    // Carol was here and left: her last seen is known.
    carol.ws().await.close().await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while alice.ok_get(&format!("/api/users/{}", carol.id)).await["last_seen"].is_null() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol's last seen is stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut a = alice.ws().await;

    // Over the cap: refused whole, nothing watched.
    let too_many: Vec<String> = (0..501).map(|i| format!("no-such-user-{i}")).collect();
    a.send(json!({"type": "presence_subscribe", "user_ids": too_many}))
        .await;
    let err = a.next_where(|f| f["type"] == "error").await;
    assert_eq!(err["code"], "bad_frame", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("500"),
        "names the cap: {err}"
    );

    // At the cap: answered, one presence per known user (duplicates once, unknown ids none).
    let mut ids: Vec<String> = (0..497).map(|i| format!("no-such-user-{i}")).collect();
    ids.extend([bob.id.clone(), carol.id.clone(), bob.id.clone()]);
    assert_eq!(ids.len(), 500);
    a.send(json!({"type": "presence_subscribe", "user_ids": ids}))
        .await;
    let first = a.next_where(|f| f["type"] == "presence").await;
    let second = a.next_where(|f| f["type"] == "presence").await;
    let mut got = [first, second];
    got.sort_by_key(|p| p["user_id"] != bob.id.as_str());
    assert_eq!(got[0]["user_id"], bob.id.as_str());
    assert_eq!(got[0]["status"], "offline");
    assert_eq!(got[1]["user_id"], carol.id.as_str());
    assert_eq!(got[1]["status"], "offline");
    assert!(
        got[1]["last_seen"].is_string(),
        "carol's last seen comes along: {}",
        got[1]
    );
    a.send(json!({"type": "ping", "ref": "after"})).await;
    let rest = a.next_where(|f| f["type"] == "pong").await;
    assert_eq!(rest["ref"], "after");
    let extra: Vec<Value> = a
        .drain(std::time::Duration::ZERO)
        .await
        .into_iter()
        .filter(|f| f["type"] == "presence" || f["type"] == "error")
        .collect();
    assert!(extra.is_empty(), "nothing else answered: {extra:?}");

    // And the watch works: bob comes online.
    let _b = bob.ws().await;
    let p = a
        .next_where(|f| f["type"] == "presence" && f["user_id"] == bob.id.as_str())
        .await;
    assert_eq!(p["status"], "online");
    server.stop().await;
}

/// The routes docs/protocol.md documents (every backquoted `METHOD /path`: the REST table, the
/// auth bullets, the WebSocket), written as OpenAPI writes them (`:id` → `{id}`).
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = include_str!("../../docs/protocol.md");
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (method, path) = quoted.split_once(' ')?;
            let is_method = ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method);
            (is_method && path.starts_with('/')).then(|| {
                let path: Vec<String> = path
                    .split('/')
                    .map(|seg| match seg.strip_prefix(':') {
                        Some(param) => format!("{{{param}}}"),
                        None => seg.to_string(),
                    })
                    .collect();
                (method.to_string(), path.join("/"))
            })
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_is_the_served_router_and_the_documented_routes() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/api/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = ["get", "post", "put", "patch", "delete"];
    let mut in_document = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if methods.contains(&method.as_str()) {
                in_document.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert_eq!(
        in_document,
        documented_routes(),
        "document vs docs/protocol.md"
    );
    assert!(
        doc["components"]["schemas"]["ErrorBody"].is_object(),
        "{doc}"
    );

    // Each operation is really served: unauthenticated and with made-up ids, a request never
    // meets the fallback (404 "route not found") nor a 405.
    let made_up = "00000000-0000-7000-8000-000000000000";
    for (method, path) in &in_document {
        let url = path.replace("{id}", made_up).replace("{mid}", made_up);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = http
            .request(method.clone(), format!("{}{url}", server.base))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {url}: {body}");
        assert!(
            !(status == 404 && body["error"]["message"] == "route not found"),
            "{method} {url} is not served"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_show_the_embedded_stores_group_commits() {
    let server = TestServer::start().await;
    let alice = Client::register(&server, "alice").await;
    alice.create_channel("general", "public", &[]).await;
    // The sign-up, its session and the channel were written: at least one group commit, each
    // with at least one write.
    let commits = server.metric("fullslack_sqlite_commits_total").await;
    let writes = server.metric("fullslack_sqlite_commit_writes_total").await;
    assert!(
        commits >= 1.0 && writes >= commits,
        "{commits} commits, {writes} writes"
    );
    for name in [
        "fullslack_sqlite_wal_pages",
        "fullslack_sqlite_checkpoints_background_total",
        "fullslack_sqlite_checkpoints_by_writer_total",
    ] {
        server.metric(name).await;
    }
    server.stop().await;
}
