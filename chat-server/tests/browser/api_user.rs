//! A user of the browser test who only speaks the API.

use std::time::Duration;

use fullslack_protocol::{rest::SendBody, ClientFrame};
use fullslack_test_support as api;

/// A user who only speaks the API: the shared test client (REST with a bearer token, and the
/// WebSocket), plus what this test asks of it.
pub(crate) struct ApiUser(api::Client);

impl ApiUser {
    pub(crate) async fn register(base: &str, username: &str) -> Self {
        ApiUser(api::Client::register(&api::RemoteServer::new(base), username).await)
    }

    pub(crate) async fn channel_of_kind(&self, kind: &str) -> String {
        let list = self.0.ok_get("/api/channels").await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} channel in {list}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Posts a message over REST, waiting out rate limits (429 + Retry-After).
    pub(crate) async fn post_message(&self, channel: &str, text: &str) {
        loop {
            let body = SendBody {
                text: text.into(),
                client_id: format!("api-{text}"),
                thread_root: None,
            };
            let (status, v) = self
                .0
                .post(
                    &format!("/api/channels/{channel}/messages"),
                    serde_json::to_value(body).unwrap(),
                )
                .await;
            if status == 429 {
                let ms = v["error"]["retry_after_ms"]
                    .as_u64()
                    .or(v["retry_after_ms"].as_u64())
                    .unwrap_or(200);
                tokio::time::sleep(Duration::from_millis(ms.max(50))).await;
                continue;
            }
            assert_eq!(status, 201, "post {text:?}");
            return;
        }
    }

    /// Connects a WebSocket, resumes, moves the read watermark to `seq`, disconnects.
    pub(crate) async fn read_over_ws(&self, channel: &str, seq: i64) {
        let mut ws = api::Ws::connect(&self.0.ws_url, &self.0.token).await;
        ws.resume(Default::default()).await;
        ws.send_frame(&ClientFrame::Read {
            reference: Some("api-read".into()),
            channel: channel.into(),
            seq,
        })
        .await;
        let v = ws.next_where(|f| f["ref"] == "api-read").await;
        assert_eq!(v["type"], "ack", "read answered {v}");
        ws.close().await;
    }
}
