//! REST bodies (docs/protocol.md, "REST routes"): what each route reads and answers beyond the
//! plain objects of [`crate::model`], its query strings, and the error body every failure
//! answers.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    event::Event,
    ids::{ChannelId, MessageId, UserId},
    model::{ChannelKind, Message, ReceiptStatus, User},
};

/// `POST /api/auth/register` and `POST /api/auth/login` (which ignores `display_name`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// The answer of register, login and refresh.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: String,
    pub user: User,
}

/// `POST /api/channels`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewChannelBody {
    pub name: String,
    pub kind: ChannelKind,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub member_ids: Vec<UserId>,
}

/// `POST /api/dms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmBody {
    pub user_ids: Vec<UserId>,
}

/// `POST /api/channels/:id/members`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteBody {
    pub user_id: UserId,
}

/// `GET /api/channels/:id/messages?before=|after=&limit=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// `POST /api/channels/:id/messages` (answers an [`crate::Ack`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendBody {
    pub text: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_root: Option<MessageId>,
}

/// `GET /api/channels/:id/events?after=&limit=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    pub after: Option<i64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<Event>,
}

/// `GET /api/channels/:id/messages/:mid/replies`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Thread {
    pub root: Message,
    pub replies: Vec<Message>,
}

/// One entry of `GET /api/channels/:id/messages/:mid/receipts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub user_id: UserId,
    pub status: ReceiptStatus,
}

/// `GET /api/search?q=&channel=&limit=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    pub q: String,
    pub channel: Option<ChannelId>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub results: Vec<Message>,
}

/// Every REST error: `{"error": {"code", "message", "retry_after_ms"?}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// Only with `rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// `GET /healthz`: `{"status": "ok"}` while the process is alive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    pub status: String,
}

/// `GET /readyz`: `status` is `ready`, `degraded` (Redis unreachable) or `not ready` (503);
/// `store` is `ok` or the error; `redis` is `ok`, `disabled` or the error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub store: String,
    pub redis: String,
}
