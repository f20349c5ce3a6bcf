//! REST routes (docs/protocol.md), operations endpoints (`/healthz`, `/readyz`, `/metrics`),
//! and the OpenAPI document generated from the same route table.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use axum_extra::extract::CookieJar;
use serde_json::json;
use utoipa::openapi::{
    path::{HttpMethod, OperationBuilder, PathItemBuilder},
    request_body::RequestBodyBuilder,
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, ResponseBuilder,
};

use fullslack_protocol::rest::{
    Credentials, DmBody, EventsPage, EventsQuery, HistoryPage, HistoryQuery, InviteBody,
    NewChannelBody, Receipt, SearchQuery, SearchResults, SendBody, Thread, TokenResponse,
};

use crate::{
    auth::AuthUser,
    error::{ApiError, ApiResult},
    model::{Ack, Channel, ChannelId, Member, Message, MessageId, User, UserId},
    service::SignedIn,
    store::Page,
    ws, AppState,
};

pub fn router(app: AppState) -> Router {
    let body_limit = app.settings.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/users", get(users))
        .route("/api/users/{id}", get(user))
        .route("/api/channels", get(my_channels).post(create_channel))
        .route("/api/channels/public", get(public_channels))
        .route("/api/dms", post(open_dm))
        .route("/api/channels/{id}", get(channel))
        .route("/api/channels/{id}/join", post(join))
        .route("/api/channels/{id}/leave", post(leave))
        .route("/api/channels/{id}/members", get(members).post(invite))
        .route("/api/channels/{id}/messages", get(history).post(send))
        .route("/api/channels/{id}/events", get(events))
        .route("/api/channels/{id}/messages/{mid}", get(message))
        .route("/api/channels/{id}/messages/{mid}/replies", get(replies))
        .route("/api/channels/{id}/messages/{mid}/receipts", get(receipts))
        .route("/api/search", get(search))
        .route("/api/ws", get(ws::handler))
        .fallback(api_not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// The answer to a known path with a method it does not have (axum adds the `Allow` header).
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Query-string extractor whose rejections (`?limit=abc`) use our error shape.
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// JSON body extractor whose rejections use our error shape.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::TooLarge("request body too large".into())
                }
                _ => ApiError::BadRequest(rejection.body_text()),
            }),
        }
    }
}

// ---- operations -----------------------------------------------------------------------------

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 503 when the store does not answer, or answers reads while its writes fail (a full disk:
/// nothing can be stored); Redis unreachable is only "degraded": the node still serves its own
/// clients. Writes are judged by their last outcome (`store::health`): "not ready" for
/// `PROBE_AFTER` after a failed write, then each call probes with one tiny write, so readiness
/// comes back as soon as writes do, even without traffic.
async fn readyz(State(app): State<AppState>) -> Response {
    let redis = match &app.cluster {
        None => Ok("disabled".to_string()),
        Some(c) => c.check().await.map(|()| "ok".to_string()),
    };
    let (redis_ok, redis) = match redis {
        Ok(s) => (true, s),
        Err(e) => (false, e),
    };
    let store = match app.store.ping().await {
        Ok(()) => match app.store_health.failing() {
            None => Ok(()),
            Some((e, at)) if at.elapsed() < crate::store::health::PROBE_AFTER => {
                Err(format!("writes failing: {e}"))
            }
            Some(_) => app
                .store
                .probe_write()
                .await
                .map_err(|e| format!("writes failing: {e}")),
        },
        Err(e) => Err(e.to_string()),
    };
    match store {
        Ok(()) => {
            app.metrics.store_ready.set(1);
            let status = if redis_ok { "ready" } else { "degraded" };
            Json(json!({"status": status, "store": "ok", "redis": redis})).into_response()
        }
        Err(e) => {
            app.metrics.store_ready.set(0);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not ready", "store": e, "redis": redis})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

// ---- auth -----------------------------------------------------------------------------------

fn signed_in(app: &AppState, jar: CookieJar, status: StatusCode, s: SignedIn) -> Response {
    let expires_at = s
        .expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let jar = jar.add(app.auth.cookie(s.token.clone()));
    (
        status,
        jar,
        Json(TokenResponse {
            token: s.token,
            expires_at,
            user: s.user,
        }),
    )
        .into_response()
}

/// The client's address as its rate limits know it: the TCP peer, or behind a trusted proxy
/// the address it forwarded (see [`crate::proxy`]).
fn client_key(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> String {
    crate::proxy::limit_key(app.settings.trusted_proxies.client_ip(peer, headers))
}

async fn register(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<Response> {
    let s = app
        .register(
            &client_key(&app, peer, &headers),
            &c.username,
            &c.password,
            c.display_name.as_deref(),
        )
        .await?;
    Ok(signed_in(&app, jar, StatusCode::CREATED, s))
}

async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<Response> {
    let s = app
        .login(&client_key(&app, peer, &headers), &c.username, &c.password)
        .await?;
    Ok(signed_in(&app, jar, StatusCode::OK, s))
}

async fn refresh(
    State(app): State<AppState>,
    who: AuthUser,
    jar: CookieJar,
) -> ApiResult<Response> {
    let s = app.refresh(&who).await?;
    Ok(signed_in(&app, jar, StatusCode::OK, s))
}

async fn logout(State(app): State<AppState>, who: AuthUser, jar: CookieJar) -> ApiResult<Response> {
    app.logout(&who).await?;
    Ok((StatusCode::NO_CONTENT, jar.add(app.auth.removal_cookie())).into_response())
}

async fn me(State(app): State<AppState>, who: AuthUser) -> ApiResult<Json<User>> {
    Ok(Json(app.user(&who.user_id).await?))
}

async fn users(State(app): State<AppState>, _who: AuthUser) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(app.users().await?))
}

async fn user(
    State(app): State<AppState>,
    _who: AuthUser,
    Path(id): Path<UserId>,
) -> ApiResult<Json<User>> {
    Ok(Json(app.user(&id).await?))
}

// ---- channels -------------------------------------------------------------------------------

async fn my_channels(State(app): State<AppState>, who: AuthUser) -> ApiResult<Json<Vec<Channel>>> {
    Ok(Json(app.channels_of(&who.user_id).await?))
}

async fn public_channels(
    State(app): State<AppState>,
    _who: AuthUser,
) -> ApiResult<Json<Vec<Channel>>> {
    Ok(Json(app.public_channels().await?))
}

async fn create_channel(
    State(app): State<AppState>,
    who: AuthUser,
    JsonBody(b): JsonBody<NewChannelBody>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    let ch = app
        .create_channel(&who.user_id, &b.name, b.kind, &b.topic, b.member_ids)
        .await?;
    Ok((StatusCode::CREATED, Json(ch)))
}

async fn open_dm(
    State(app): State<AppState>,
    who: AuthUser,
    JsonBody(b): JsonBody<DmBody>,
) -> ApiResult<Json<Channel>> {
    Ok(Json(app.open_dm(&who.user_id, b.user_ids).await?))
}

async fn channel(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<Json<Channel>> {
    Ok(Json(app.channel_for(&who.user_id, &id).await?))
}

async fn join(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<Json<Channel>> {
    Ok(Json(app.join(&who.user_id, &id).await?))
}

async fn leave(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    app.leave(&who.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invite(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
    JsonBody(b): JsonBody<InviteBody>,
) -> ApiResult<StatusCode> {
    app.invite(&who.user_id, &id, &b.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(app.members(&who.user_id, &id).await?))
}

// ---- messages -------------------------------------------------------------------------------

async fn history(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<HistoryPage>> {
    let page = match (q.before, q.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give `before` or `after`, not both".into(),
            ))
        }
        (Some(b), None) => Page::Before(b),
        (None, Some(a)) => Page::After(a),
        (None, None) => Page::Latest,
    };
    let (messages, has_more) = app
        .history(&who.user_id, &id, page, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(HistoryPage { messages, has_more }))
}

async fn send(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<(StatusCode, Json<Ack>)> {
    let ack = app
        .send_message(&who.user_id, &id, &b.client_id, &b.text, b.thread_root)
        .await?;
    Ok((StatusCode::CREATED, Json(ack)))
}

async fn events(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<EventsPage>> {
    let events = app
        .events(
            &who.user_id,
            &id,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(500),
        )
        .await?;
    Ok(Json(EventsPage { events }))
}

async fn message(
    State(app): State<AppState>,
    who: AuthUser,
    Path((id, mid)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(app.message(&who.user_id, &id, &mid).await?))
}

async fn replies(
    State(app): State<AppState>,
    who: AuthUser,
    Path((id, mid)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<Thread>> {
    let (root, replies) = app.thread(&who.user_id, &id, &mid).await?;
    Ok(Json(Thread { root, replies }))
}

async fn receipts(
    State(app): State<AppState>,
    who: AuthUser,
    Path((id, mid)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<Vec<Receipt>>> {
    let list = app.receipts(&who.user_id, &id, &mid).await?;
    Ok(Json(
        list.into_iter()
            .map(|(user_id, status)| Receipt { user_id, status })
            .collect(),
    ))
}

async fn search(
    State(app): State<AppState>,
    who: AuthUser,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<SearchResults>> {
    let results = app
        .search(
            &who.user_id,
            &q.q,
            q.channel.as_deref(),
            q.limit.unwrap_or(20),
        )
        .await?;
    Ok(Json(SearchResults { results }))
}

// ---- OpenAPI --------------------------------------------------------------------------------

async fn openapi() -> Json<OpenApi> {
    Json(openapi_document())
}

/// (method, path, summary, request schema, response status, response schema)
type RouteDoc = (
    HttpMethod,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
);

const ROUTES: &[RouteDoc] = &[
    (
        HttpMethod::Post,
        "/api/auth/register",
        "Create an account; sets the session cookie",
        Some("Credentials"),
        "201",
        Some("TokenResponse"),
    ),
    (
        HttpMethod::Post,
        "/api/auth/login",
        "Sign in; sets the session cookie",
        Some("Credentials"),
        "200",
        Some("TokenResponse"),
    ),
    (
        HttpMethod::Post,
        "/api/auth/refresh",
        "New access token for the same session",
        None,
        "200",
        Some("TokenResponse"),
    ),
    (
        HttpMethod::Post,
        "/api/auth/logout",
        "Revoke the session and clear the cookie",
        None,
        "204",
        None,
    ),
    (
        HttpMethod::Get,
        "/api/me",
        "The signed-in user",
        None,
        "200",
        Some("User"),
    ),
    (
        HttpMethod::Get,
        "/api/users",
        "Every user with presence and last seen",
        None,
        "200",
        Some("User"),
    ),
    (
        HttpMethod::Get,
        "/api/users/{id}",
        "One user",
        None,
        "200",
        Some("User"),
    ),
    (
        HttpMethod::Get,
        "/api/channels",
        "Your channels with unread counts",
        None,
        "200",
        Some("Channel"),
    ),
    (
        HttpMethod::Post,
        "/api/channels",
        "Create a public or private channel",
        Some("NewChannelBody"),
        "201",
        Some("Channel"),
    ),
    (
        HttpMethod::Get,
        "/api/channels/public",
        "Every public channel",
        None,
        "200",
        Some("Channel"),
    ),
    (
        HttpMethod::Post,
        "/api/dms",
        "Open the 1:1 DM, notes to self, or a new group",
        Some("DmBody"),
        "200",
        Some("Channel"),
    ),
    (
        HttpMethod::Get,
        "/api/channels/{id}",
        "One channel",
        None,
        "200",
        Some("Channel"),
    ),
    (
        HttpMethod::Post,
        "/api/channels/{id}/join",
        "Join a public channel",
        None,
        "200",
        Some("Channel"),
    ),
    (
        HttpMethod::Post,
        "/api/channels/{id}/leave",
        "Leave a channel or group",
        None,
        "204",
        None,
    ),
    (
        HttpMethod::Get,
        "/api/channels/{id}/members",
        "Members with receipt watermarks",
        None,
        "200",
        Some("Member"),
    ),
    (
        HttpMethod::Post,
        "/api/channels/{id}/members",
        "Invite a user",
        Some("InviteBody"),
        "204",
        None,
    ),
    (
        HttpMethod::Get,
        "/api/channels/{id}/messages",
        "History page (?before=SEQ | ?after=SEQ, &limit=N)",
        None,
        "200",
        Some("HistoryPage"),
    ),
    (
        HttpMethod::Post,
        "/api/channels/{id}/messages",
        "Send a message (idempotent by client_id)",
        Some("SendBody"),
        "201",
        Some("Ack"),
    ),
    (
        HttpMethod::Get,
        "/api/channels/{id}/events",
        "Replay log (?after=SEQ&limit=N)",
        None,
        "200",
        Some("EventsPage"),
    ),
    (
        HttpMethod::Get,
        "/api/channels/{id}/messages/{mid}",
        "One message",
        None,
        "200",
        Some("Message"),
    ),
    (
        HttpMethod::Get,
        "/api/channels/{id}/messages/{mid}/replies",
        "A thread",
        None,
        "200",
        Some("Thread"),
    ),
    (
        HttpMethod::Get,
        "/api/channels/{id}/messages/{mid}/receipts",
        "Per-member receipt status",
        None,
        "200",
        Some("Receipt"),
    ),
    (
        HttpMethod::Get,
        "/api/search",
        "Full-text search (?q=WORDS&channel=ID&limit=N)",
        None,
        "200",
        Some("SearchResults"),
    ),
    (
        HttpMethod::Get,
        "/api/ws",
        "WebSocket upgrade (see docs/protocol.md)",
        None,
        "101",
        None,
    ),
    (HttpMethod::Get, "/healthz", "Liveness", None, "200", None),
    (
        HttpMethod::Get,
        "/readyz",
        "Readiness (store reachable)",
        None,
        "200",
        None,
    ),
    (
        HttpMethod::Get,
        "/metrics",
        "Prometheus metrics",
        None,
        "200",
        None,
    ),
];

pub fn openapi_document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for (method, path, summary, request, status, response) in ROUTES {
        let mut op = OperationBuilder::new().summary(Some(*summary));
        if let Some(schema) = request {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(*schema)))
                            .build(),
                    )
                    .required(Some(utoipa::openapi::Required::True))
                    .build(),
            ));
        }
        let mut resp = ResponseBuilder::new().description(*summary);
        if let Some(schema) = response {
            resp = resp.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(*schema)))
                    .build(),
            );
        }
        op = op.response(*status, resp.build()).response(
            "default",
            ResponseBuilder::new()
                .description("Error: {\"error\": {\"code\", \"message\"}}")
                .build(),
        );
        paths = paths.path(
            *path,
            PathItemBuilder::new()
                .operation(method.clone(), op.build())
                .build(),
        );
    }
    let mut components = utoipa::openapi::ComponentsBuilder::new();
    macro_rules! schemas {
        ($($t:ty),*) => { $( components = components.schema(<$t as utoipa::ToSchema>::name(), <$t as utoipa::PartialSchema>::schema()); )* };
    }
    schemas!(
        Credentials,
        TokenResponse,
        User,
        Channel,
        NewChannelBody,
        DmBody,
        InviteBody,
        Member,
        HistoryPage,
        SendBody,
        Ack,
        EventsPage,
        crate::model::Event,
        Message,
        Thread,
        Receipt,
        SearchResults,
        crate::model::Presence,
        crate::model::ChannelKind,
        crate::model::Role,
        crate::model::Reaction,
        crate::model::EventKind,
        crate::model::ReceiptStatus
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("fullslack chat server")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}
