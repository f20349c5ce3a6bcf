//! REST routes (docs/protocol.md), operations endpoints (`/healthz`, `/readyz`, `/metrics`),
//! and the OpenAPI document: one route table ([`api_routes`]) serves both, each handler
//! carrying its operation (`#[utoipa::path]`) and the protocol types as schemas.

// `#[utoipa::path]` expands to paths qualified with the spans of the types written in it, which
// this lint would blame on those types.
#![allow(unused_qualifications)]

use std::net::SocketAddr;

use std::sync::OnceLock;

use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json, Router,
};
use axum_extra::extract::CookieJar;
use utoipa::{
    openapi::{
        path::{Operation, PathItem},
        ContentBuilder, InfoBuilder, OpenApi, Ref, ResponseBuilder,
    },
    PartialSchema, ToSchema,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use fullslack_protocol::rest::{
    Credentials, DmBody, ErrorBody, EventsPage, EventsQuery, HistoryPage, HistoryQuery, InviteBody,
    Liveness, NewChannelBody, Readiness, Receipt, SearchQuery, SearchResults, SendBody, Thread,
    TokenResponse,
};

use crate::{
    accounts::SignedIn,
    auth::AuthUser,
    error::{ApiError, ApiResult},
    model::{Ack, Channel, ChannelId, Member, Message, MessageId, User, UserId},
    store::Page,
    ws, AppState,
};

/// The one route table: every route with its OpenAPI operation (`#[utoipa::path]` on each
/// handler), so the served routes and the document cannot drift apart.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(users))
        .routes(routes!(user))
        .routes(routes!(my_channels, create_channel))
        .routes(routes!(public_channels))
        .routes(routes!(open_dm))
        .routes(routes!(channel))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(members, invite))
        .routes(routes!(history, send))
        .routes(routes!(events))
        .routes(routes!(message))
        .routes(routes!(replies))
        .routes(routes!(receipts))
        .routes(routes!(search))
        .routes(routes!(ws::handler))
}

pub fn router(app: AppState) -> Router {
    let body_limit = app.settings.limits.max_body_bytes;
    let (routes, _) = api_routes().split_for_parts();
    routes
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

#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness", responses((status = 200, body = Liveness)))]
async fn healthz() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".into(),
    })
}

/// 503 when the store does not answer, or answers reads while its writes fail (a full disk:
/// nothing can be stored); Redis unreachable is only "degraded": the node still serves its own
/// clients. Writes are judged by their last outcome (`store::health`): "not ready" for
/// `PROBE_AFTER` after a failed write, then each call probes with one tiny write, so readiness
/// comes back as soon as writes do, even without traffic.
#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness (store reachable, writes working; Redis degraded or not)", responses((status = 200, description = "ready or degraded", body = Readiness), (status = 503, description = "not ready", body = Readiness)))]
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
            Json(Readiness {
                status: status.into(),
                store: "ok".into(),
                redis,
            })
            .into_response()
        }
        Err(e) => {
            app.metrics.store_ready.set(0);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Readiness {
                    status: "not ready".into(),
                    store: e,
                    redis,
                }),
            )
                .into_response()
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
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

#[utoipa::path(post, path = "/api/auth/register", tag = "auth", summary = "Sign up (sets the cookie)", request_body = Credentials, responses((status = 201, body = TokenResponse)))]
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

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", summary = "Sign in (sets the cookie)", request_body = Credentials, responses((status = 200, body = TokenResponse)))]
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

#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", summary = "New token for the same session", responses((status = 200, body = TokenResponse)))]
async fn refresh(
    State(app): State<AppState>,
    who: AuthUser,
    jar: CookieJar,
) -> ApiResult<Response> {
    let s = app.refresh(&who).await?;
    Ok(signed_in(&app, jar, StatusCode::OK, s))
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", summary = "Revoke the session, clear the cookie", responses((status = 204)))]
async fn logout(State(app): State<AppState>, who: AuthUser, jar: CookieJar) -> ApiResult<Response> {
    app.logout(&who).await?;
    Ok((StatusCode::NO_CONTENT, jar.add(app.auth.removal_cookie())).into_response())
}

#[utoipa::path(get, path = "/api/me", tag = "users", summary = "The signed-in user", responses((status = 200, body = User)))]
async fn me(State(app): State<AppState>, who: AuthUser) -> ApiResult<Json<User>> {
    Ok(Json(app.user(&who.user_id).await?))
}

#[utoipa::path(get, path = "/api/users", tag = "users", summary = "Every user with presence and last seen", responses((status = 200, body = Vec<User>)))]
async fn users(State(app): State<AppState>, _who: AuthUser) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(app.users().await?))
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "users", summary = "One user", params(("id" = UserId, Path, description = "user id")), responses((status = 200, body = User)))]
async fn user(
    State(app): State<AppState>,
    _who: AuthUser,
    Path(id): Path<UserId>,
) -> ApiResult<Json<User>> {
    Ok(Json(app.user(&id).await?))
}

// ---- channels -------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/channels", tag = "channels", summary = "The channels you are in, with unread counts", responses((status = 200, body = Vec<Channel>)))]
async fn my_channels(State(app): State<AppState>, who: AuthUser) -> ApiResult<Json<Vec<Channel>>> {
    Ok(Json(app.channels_of(&who.user_id).await?))
}

#[utoipa::path(get, path = "/api/channels/public", tag = "channels", summary = "Every public channel", responses((status = 200, body = Vec<Channel>)))]
async fn public_channels(
    State(app): State<AppState>,
    _who: AuthUser,
) -> ApiResult<Json<Vec<Channel>>> {
    Ok(Json(app.public_channels().await?))
}

#[utoipa::path(post, path = "/api/channels", tag = "channels", summary = "Create a channel (you are its owner)", request_body = NewChannelBody, responses((status = 201, body = Channel)))]
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

#[utoipa::path(post, path = "/api/dms", tag = "channels", summary = "Open a DM, a group DM, or your notes-to-self", request_body = DmBody, responses((status = 200, body = Channel)))]
async fn open_dm(
    State(app): State<AppState>,
    who: AuthUser,
    JsonBody(b): JsonBody<DmBody>,
) -> ApiResult<Json<Channel>> {
    Ok(Json(app.open_dm(&who.user_id, b.user_ids).await?))
}

#[utoipa::path(get, path = "/api/channels/{id}", tag = "channels", summary = "One channel", params(("id" = ChannelId, Path, description = "channel id")), responses((status = 200, body = Channel)))]
async fn channel(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<Json<Channel>> {
    Ok(Json(app.channel_for(&who.user_id, &id).await?))
}

#[utoipa::path(post, path = "/api/channels/{id}/join", tag = "channels", summary = "Join a public channel", params(("id" = ChannelId, Path, description = "channel id")), responses((status = 200, body = Channel)))]
async fn join(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<Json<Channel>> {
    Ok(Json(app.join(&who.user_id, &id).await?))
}

#[utoipa::path(post, path = "/api/channels/{id}/leave", tag = "channels", summary = "Leave a channel or group", params(("id" = ChannelId, Path, description = "channel id")), responses((status = 204)))]
async fn leave(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    app.leave(&who.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/channels/{id}/members", tag = "channels", summary = "Invite a user", params(("id" = ChannelId, Path, description = "channel id")), request_body = InviteBody, responses((status = 204)))]
async fn invite(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
    JsonBody(b): JsonBody<InviteBody>,
) -> ApiResult<StatusCode> {
    app.invite(&who.user_id, &id, &b.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/channels/{id}/members", tag = "channels", summary = "Members with receipt watermarks", params(("id" = ChannelId, Path, description = "channel id")), responses((status = 200, body = Vec<Member>)))]
async fn members(
    State(app): State<AppState>,
    who: AuthUser,
    Path(id): Path<ChannelId>,
) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(app.members(&who.user_id, &id).await?))
}

// ---- messages -------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/channels/{id}/messages", tag = "messages", summary = "History page, oldest first, top-level messages only", params(("id" = ChannelId, Path, description = "channel id"), HistoryQuery), responses((status = 200, body = HistoryPage)))]
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

#[utoipa::path(post, path = "/api/channels/{id}/messages", tag = "messages", summary = "Send a message (idempotent by client_id)", params(("id" = ChannelId, Path, description = "channel id")), request_body = SendBody, responses((status = 201, body = Ack)))]
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

#[utoipa::path(get, path = "/api/channels/{id}/events", tag = "messages", summary = "Replay log: the events the WebSocket sends", params(("id" = ChannelId, Path, description = "channel id"), EventsQuery), responses((status = 200, body = EventsPage)))]
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

#[utoipa::path(get, path = "/api/channels/{id}/messages/{mid}", tag = "messages", summary = "One message", params(("id" = ChannelId, Path, description = "channel id"), ("mid" = MessageId, Path, description = "message id")), responses((status = 200, body = Message)))]
async fn message(
    State(app): State<AppState>,
    who: AuthUser,
    Path((id, mid)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(app.message(&who.user_id, &id, &mid).await?))
}

#[utoipa::path(get, path = "/api/channels/{id}/messages/{mid}/replies", tag = "messages", summary = "A thread", params(("id" = ChannelId, Path, description = "channel id"), ("mid" = MessageId, Path, description = "message id")), responses((status = 200, body = Thread)))]
async fn replies(
    State(app): State<AppState>,
    who: AuthUser,
    Path((id, mid)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<Thread>> {
    let (root, replies) = app.thread(&who.user_id, &id, &mid).await?;
    Ok(Json(Thread { root, replies }))
}

#[utoipa::path(get, path = "/api/channels/{id}/messages/{mid}/receipts", tag = "messages", summary = "Receipt status per other member", params(("id" = ChannelId, Path, description = "channel id"), ("mid" = MessageId, Path, description = "message id")), responses((status = 200, body = Vec<Receipt>)))]
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

#[utoipa::path(get, path = "/api/search", tag = "messages", summary = "Full-text search in the channels you can read", params(SearchQuery), responses((status = 200, body = SearchResults)))]
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

#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", summary = "This document", responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi() -> Json<OpenApi> {
    Json(openapi_document().clone())
}

/// The OpenAPI document of [`api_routes`] (built once): its operations, the protocol types they
/// use as schemas, and on every operation the error body all failures answer.
pub fn openapi_document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, mut doc) = api_routes().split_for_parts();
        doc.info = InfoBuilder::new()
            .title("fullslack chat server")
            .version(env!("CARGO_PKG_VERSION"))
            .build();
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                op.responses.responses.insert(
                    "default".into(),
                    ResponseBuilder::new()
                        .description(
                            "Error: {\"error\": {\"code\", \"message\"}} (docs/protocol.md)",
                        )
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build()
                        .into(),
                );
            }
        }
        doc
    })
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}
