//! The PHP web chat bridge's API, unchanged on the wire: `GET|POST /api/v1/?action=…` and
//! `/api/v1/index.php?action=…` (DESIGN §5, docs/migrating-from-the-php-bridge.md).
//!
//! Old clients keep working as they are — the Broca platform's `web_chat` plugin (the agent
//! side) with `inbox` and `outbox`, the old widget with `messages` and `responses`, admin scripts
//! with `sessions` and `session_messages` — while everything behind the API is Airlock's: durable
//! storage, leases behind `inbox` (a crashed poller loses nothing), rate limits, no keys handed
//! out. Envelopes, field names and types, status codes and error texts are the old bridge's; they
//! are built here and nowhere else, and the error texts are the constants in [`errors`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use airlock_shared::admin::AdminEvent;
use airlock_shared::{Message, MessageStatus, Role};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AdminAuth, ConnectorAuth};
use crate::app::AppState;
use crate::client_ip::ClientIp;
use crate::compat::{
    database_time, ensure_interface, envelope_time, message_time, new_uid, parse_time,
    session_id_is_valid,
};
use crate::limits::Limited;
use crate::store::{
    ConnectorRow, InterfaceRow, NewCompatSession, NewLogMessage, SessionRow, StoreError,
};
use crate::tokens::new_id;

/// Largest request body: a 10,000-byte message, JSON-escaped, with room to spare.
const BODY_LIMIT: usize = 64 * 1024;
/// Longest visitor message, in bytes (the old bridge's limit).
const MAX_MESSAGE_BYTES: usize = 10_000;
/// Longest agent response, in characters (as a native reply).
const MAX_RESPONSE_CHARS: usize = 100_000;
/// Page size of `inbox` and `sessions` when the client does not say, and the most it may ask.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 100;

/// The old bridge's error texts, kept word for word where its documentation gives them.
pub mod errors {
    pub const INVALID_ACTION: &str = "Invalid action";
    pub const METHOD_NOT_ALLOWED: &str = "Method not allowed";
    pub const AUTHENTICATION_REQUIRED: &str = "Authentication required";
    pub const RATE_LIMITED: &str = "Rate limit exceeded. Please try again later.";
    pub const INVALID_SESSION_ID: &str = "Invalid session ID format";
    pub const SESSION_ID_REQUIRED: &str = "Session ID is required";
    pub const SESSION_NOT_FOUND: &str = "Session not found";
    pub const SESSION_ENDED: &str = "Session has ended";
    pub const MESSAGE_REQUIRED: &str = "Message is required";
    pub const MESSAGE_TOO_LONG: &str = "Message too long (maximum 10000 bytes)";
    pub const RESPONSE_REQUIRED: &str = "Response is required";
    pub const RESPONSE_TOO_LONG: &str = "Response too long";
    pub const INVALID_JSON: &str = "Invalid JSON";
    pub const INVALID_SINCE: &str = "Invalid since timestamp";
    pub const INVALID_MESSAGE_ID: &str = "Invalid message ID";
    pub const BODY_TOO_LARGE: &str = "Request body too large";
    pub const INVALID_REQUEST: &str = "Invalid request";
    pub const INTERNAL: &str = "Internal server error";
}

/// The compat routes, with CORS `*` on every answer (errors included) as the old bridge sent.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    let (router, spec) = OpenApiRouter::new()
        .routes(routes!(root_get, root_post, root_options))
        .routes(routes!(index_get, index_post, index_options))
        .split_for_parts();
    // One `layer` call for the four, as in `http::router`: each call would box every request
    // once more.
    let router = router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST, OPTIONS"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("Content-Type, Authorization"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                )),
        );
    let mut router = OpenApiRouter::from(router);
    *router.get_openapi_mut() = spec;
    router
}

// One handler per method and path: utoipa describes each, and all of them are `handle`.

#[utoipa::path(get, path = "/api/v1/", tag = "compat",
    summary = "PHP web chat bridge API: `inbox`, `responses`, `sessions`, `session_messages`",
    params(("action" = String, Query, description = "The operation")),
    responses((status = 200, description = "`{success: true, message, timestamp, data}`"),
        (status = 400, description = "`{success: false, error, code, timestamp}`"),
        (status = 401, description = "Missing or wrong key")))]
async fn root_get(state: State<Arc<AppState>>, ip: ClientIp, request: Request) -> Response {
    handle(state, ip, request).await
}

#[utoipa::path(post, path = "/api/v1/", tag = "compat",
    summary = "PHP web chat bridge API: `messages`, `outbox`",
    params(("action" = String, Query, description = "The operation")),
    responses((status = 200, description = "`{success: true, message, timestamp, data}`"),
        (status = 400, description = "`{success: false, error, code, timestamp}`"),
        (status = 429, description = "Over a rate limit")))]
async fn root_post(state: State<Arc<AppState>>, ip: ClientIp, request: Request) -> Response {
    handle(state, ip, request).await
}

#[utoipa::path(options, path = "/api/v1/", tag = "compat",
    summary = "CORS preflight of the PHP web chat bridge API",
    responses((status = 200, description = "Empty")))]
async fn root_options(state: State<Arc<AppState>>, ip: ClientIp, request: Request) -> Response {
    handle(state, ip, request).await
}

#[utoipa::path(get, path = "/api/v1/index.php", tag = "compat",
    summary = "The same as `GET /api/v1/`",
    params(("action" = String, Query, description = "The operation")),
    responses((status = 200, description = "`{success: true, message, timestamp, data}`")))]
async fn index_get(state: State<Arc<AppState>>, ip: ClientIp, request: Request) -> Response {
    handle(state, ip, request).await
}

#[utoipa::path(post, path = "/api/v1/index.php", tag = "compat",
    summary = "The same as `POST /api/v1/`",
    params(("action" = String, Query, description = "The operation")),
    responses((status = 200, description = "`{success: true, message, timestamp, data}`")))]
async fn index_post(state: State<Arc<AppState>>, ip: ClientIp, request: Request) -> Response {
    handle(state, ip, request).await
}

#[utoipa::path(options, path = "/api/v1/index.php", tag = "compat",
    summary = "CORS preflight of the PHP web chat bridge API",
    responses((status = 200, description = "Empty")))]
async fn index_options(state: State<Arc<AppState>>, ip: ClientIp, request: Request) -> Response {
    handle(state, ip, request).await
}

/// A compat error: the old bridge's envelope and status.
#[derive(Debug)]
struct CompatError {
    status: StatusCode,
    error: &'static str,
    retry_after: Option<u64>,
}

impl CompatError {
    fn new(status: StatusCode, error: &'static str) -> Self {
        CompatError {
            status,
            error,
            retry_after: None,
        }
    }

    fn bad_request(error: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        let now = chrono::Utc::now().timestamp_millis();
        let body = json!({
            "success": false,
            "error": self.error,
            "code": self.status.as_u16(),
            "timestamp": envelope_time(now),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<Limited> for CompatError {
    fn from(limited: Limited) -> Self {
        CompatError {
            retry_after: Some(limited.retry_after_secs),
            ..CompatError::new(StatusCode::TOO_MANY_REQUESTS, errors::RATE_LIMITED)
        }
    }
}

/// Native errors on the way (authentication, storage) in the compat envelope; the cause of a
/// server error is logged by [`ApiError`]'s own conversion, never shown.
impl From<ApiError> for CompatError {
    fn from(err: ApiError) -> Self {
        match err.status {
            StatusCode::UNAUTHORIZED => {
                CompatError::new(StatusCode::UNAUTHORIZED, errors::AUTHENTICATION_REQUIRED)
            }
            StatusCode::TOO_MANY_REQUESTS => CompatError {
                retry_after: err.retry_after,
                ..CompatError::new(StatusCode::TOO_MANY_REQUESTS, errors::RATE_LIMITED)
            },
            StatusCode::NOT_FOUND if err.code == "session_not_found" => {
                CompatError::new(StatusCode::NOT_FOUND, errors::SESSION_NOT_FOUND)
            }
            status if status.is_server_error() => {
                // Logs the cause chain once, in the one place errors are logged.
                let _ = err.into_response();
                CompatError::new(StatusCode::INTERNAL_SERVER_ERROR, errors::INTERNAL)
            }
            _ if err.code == "session_closed" => {
                CompatError::new(StatusCode::FORBIDDEN, errors::SESSION_ENDED)
            }
            _ => CompatError::bad_request(errors::INVALID_REQUEST),
        }
    }
}

impl From<StoreError> for CompatError {
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<crate::manage::ManageError> for CompatError {
    fn from(err: crate::manage::ManageError) -> Self {
        ApiError::internal(err).into()
    }
}

type Result<T, E = CompatError> = std::result::Result<T, E>;

/// The success envelope.
fn success(message: &str, data: Value) -> Response {
    let now = chrono::Utc::now().timestamp_millis();
    axum::Json(json!({
        "success": true,
        "message": message,
        "timestamp": envelope_time(now),
        "data": data,
    }))
    .into_response()
}

/// The operations, by the `action` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Messages,
    Inbox,
    Outbox,
    Responses,
    Sessions,
    SessionMessages,
}

impl Action {
    fn parse(name: &str) -> Option<Action> {
        Some(match name {
            "messages" => Action::Messages,
            "inbox" => Action::Inbox,
            "outbox" => Action::Outbox,
            "responses" => Action::Responses,
            "sessions" => Action::Sessions,
            "session_messages" => Action::SessionMessages,
            _ => return None,
        })
    }

    fn method(self) -> Method {
        match self {
            Action::Messages | Action::Outbox => Method::POST,
            _ => Method::GET,
        }
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    request: Request,
) -> Response {
    if request.method() == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    let (mut parts, body) = request.into_parts();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let Some(action) = query.get("action").and_then(|a| Action::parse(a)) else {
        return CompatError::bad_request(errors::INVALID_ACTION).into_response();
    };
    if parts.method != action.method() {
        return method_not_allowed().await.into_response();
    }
    let result = match action {
        Action::Inbox => inbox(&state, &mut parts, &query).await,
        Action::Responses => responses(&state, ip, &query).await,
        Action::Sessions => sessions(&state, &mut parts, &query).await,
        Action::SessionMessages => session_messages(&state, &mut parts, &query).await,
        Action::Messages | Action::Outbox => match axum::body::to_bytes(body, BODY_LIMIT).await {
            Err(_) => Err(CompatError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                errors::BODY_TOO_LARGE,
            )),
            Ok(bytes) if action == Action::Messages => {
                messages(&state, ip, &parts.headers, &bytes).await
            }
            Ok(bytes) => outbox(&state, &mut parts, &bytes).await,
        },
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The answer to a method the path does not take.
async fn method_not_allowed() -> CompatError {
    CompatError::new(StatusCode::METHOD_NOT_ALLOWED, errors::METHOD_NOT_ALLOWED)
}

/// The connector whose key (the old "API key") the request carries.
async fn connector(state: &Arc<AppState>, parts: &mut Parts) -> Result<ConnectorRow> {
    let ConnectorAuth(connector) = ConnectorAuth::from_request_parts(parts, state).await?;
    Ok(connector)
}

/// Checks the request carries an admin key (the old "admin key").
async fn admin(state: &Arc<AppState>, parts: &mut Parts) -> Result<()> {
    AdminAuth::from_request_parts(parts, state).await?;
    Ok(())
}

/// A page size: the old default when absent or not a number, at most [`MAX_LIMIT`].
fn limit(query: &HashMap<String, String>) -> u32 {
    query
        .get("limit")
        .and_then(|l| l.trim().parse::<i64>().ok())
        .map(|l| l.clamp(1, i64::from(MAX_LIMIT)) as u32)
        .unwrap_or(DEFAULT_LIMIT)
}

fn offset(query: &HashMap<String, String>) -> u32 {
    query
        .get("offset")
        .and_then(|o| o.trim().parse::<i64>().ok())
        .map(|o| o.clamp(0, i64::from(u32::MAX)) as u32)
        .unwrap_or(0)
}

/// `since` read as a time (never compared as text); absent or empty is "from the start".
fn since(query: &HashMap<String, String>) -> Result<Option<i64>> {
    match query
        .get("since")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => Ok(None),
        Some(text) => parse_time(text)
            .map(Some)
            .ok_or(CompatError::bad_request(errors::INVALID_SINCE)),
    }
}

/// A well-formed `session_id` from the query or body.
fn session_id(value: Option<&str>) -> Result<&str> {
    match value {
        None | Some("") => Err(CompatError::bad_request(errors::SESSION_ID_REQUIRED)),
        Some(id) if session_id_is_valid(id) => Ok(id),
        Some(_) => Err(CompatError::bad_request(errors::INVALID_SESSION_ID)),
    }
}

/// The JSON object of a request body (whatever its `Content-Type`, as PHP read it).
fn json_body(bytes: &Bytes) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(CompatError::bad_request(errors::INVALID_JSON)),
    }
}

fn millis(time: chrono::DateTime<chrono::Utc>) -> i64 {
    time.timestamp_millis()
}

/// The `session_id` old clients know a session by: the one they chose, else the native id.
fn wire_session_id(session_id: &str, compat_ids: &HashMap<String, String>) -> String {
    compat_ids
        .get(session_id)
        .cloned()
        .unwrap_or_else(|| session_id.to_string())
}

/// `GET ?action=inbox` (API key): leases the next visitor messages to the caller, one per
/// session, for the compat lease length. An item not answered through `outbox` in that time is
/// offered again.
async fn inbox(
    state: &Arc<AppState>,
    parts: &mut Parts,
    query: &HashMap<String, String>,
) -> Result<Response> {
    let connector = connector(state, parts).await?;
    let limit = limit(query);
    let offset = offset(query);
    // Validated and read as a time, but not a filter: every unanswered item is offered, because
    // with leases an item older than `since` that is still here is one a poller never answered
    // (see docs/migrating-from-the-php-bridge.md).
    since(query)?;
    let items = state
        .relay
        .claim(
            &connector,
            limit,
            Duration::ZERO,
            state.compat.lease_ms,
            0,
            false,
        )
        .await?;
    let message_ids: Vec<&str> = items.iter().map(|i| i.message.id.as_str()).collect();
    let numbers = state.store.compat_numbers(&message_ids).await?;
    let session_ids: Vec<String> = items.iter().map(|i| i.session.id.clone()).collect();
    let compat_ids = state.store.compat_ids(&session_ids).await?;
    let messages: Vec<Value> = items
        .iter()
        .map(|item| {
            json!({
                "id": numbers.get(&item.message.id).copied().unwrap_or_default(),
                "session_id": wire_session_id(&item.session.id, &compat_ids),
                "message": item.message.text,
                "timestamp": message_time(millis(item.message.created_at)),
                "uid": item.session.visitor_id,
            })
        })
        .collect();
    let count = messages.len() as u32;
    Ok(success(
        "Messages retrieved successfully",
        json!({
            "messages": messages,
            "pagination": {
                "total": offset + count,
                "limit": limit,
                "offset": offset,
                "has_more": count == limit,
            },
        }),
    ))
}

/// The session a connector names in `outbox`: a compat session by its `session_id`, else a
/// native session (by its id) of an interface the connector serves.
async fn session_for_connector(
    state: &Arc<AppState>,
    connector: &ConnectorRow,
    id: &str,
) -> Result<SessionRow> {
    let not_found = || CompatError::new(StatusCode::NOT_FOUND, errors::SESSION_NOT_FOUND);
    if let Some(interface) = state
        .store
        .interface_by_slug(&state.compat.interface_slug)
        .await?
        && let Some(session) = state.store.compat_session(&interface.id, id).await?
    {
        return Ok(session);
    }
    let session = state.store.session(id).await?.ok_or_else(not_found)?;
    if !state
        .store
        .connector_may_serve(connector, &session.interface_id)
        .await?
    {
        return Err(not_found());
    }
    Ok(session)
}

/// `POST ?action=outbox` (API key) `{session_id, response, message_id?}`: completes the
/// session's oldest item the caller holds (or the one `message_id` names) with `response`; with
/// none held, `response` is stored as a message the agent sends on its own.
async fn outbox(state: &Arc<AppState>, parts: &mut Parts, body: &Bytes) -> Result<Response> {
    let connector = connector(state, parts).await?;
    let fields = json_body(body)?;
    let wire_id = session_id(fields.get("session_id").and_then(Value::as_str))?;
    let text = match fields.get("response").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => text,
        _ => return Err(CompatError::bad_request(errors::RESPONSE_REQUIRED)),
    };
    if text.chars().count() > MAX_RESPONSE_CHARS || text.contains('\0') {
        return Err(CompatError::bad_request(errors::RESPONSE_TOO_LONG));
    }
    let named = match fields.get("message_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or(CompatError::bad_request(errors::INVALID_MESSAGE_ID))?,
        ),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<i64>()
                .map_err(|_| CompatError::bad_request(errors::INVALID_MESSAGE_ID))?,
        ),
        Some(_) => return Err(CompatError::bad_request(errors::INVALID_MESSAGE_ID)),
    };
    let session = session_for_connector(state, &connector, wire_id).await?;
    let named_message = match named {
        Some(number) => state.store.message_by_compat_number(number).await?,
        None => None,
    };
    let reply = match (named, named_message.as_deref()) {
        // A `message_id` this bridge never showed: nothing of the caller's to complete.
        (Some(_), None) => None,
        (_, message) => {
            let lease = state
                .store
                .oldest_held_lease(&session.id, &connector.id, message)
                .await?;
            match lease {
                Some(lease_id) => {
                    match state.relay.reply(&lease_id, &connector, text).await {
                        Ok(reply) => Some(reply),
                        // Handed to another poller a moment ago: keep the words anyway.
                        Err(StoreError::LeaseSuperseded | StoreError::ItemFinished(_)) => None,
                        Err(err) => return Err(err.into()),
                    }
                }
                None => None,
            }
        }
    };
    let reply = match reply {
        Some(reply) => reply,
        None => agent_message(state, &session, text).await?,
    };
    let numbers = state.store.compat_numbers(&[reply.id.as_str()]).await?;
    Ok(success(
        "Response sent successfully",
        json!({
            "response_id": numbers.get(&reply.id).copied().unwrap_or_default(),
            "session_id": wire_id,
            "timestamp": message_time(millis(reply.created_at)),
        }),
    ))
}

/// Stores `text` as a message the agent sends on its own, and tells the session's readers.
async fn agent_message(state: &Arc<AppState>, session: &SessionRow, text: &str) -> Result<Message> {
    let message = state
        .store
        .append_message(&NewLogMessage {
            session_id: &session.id,
            role: Role::Assistant.as_str(),
            text,
            status: MessageStatus::Complete.as_str(),
            client_id: None,
            reply_to: None,
            created_at: state.relay.now(),
            queue: false,
        })
        .await?
        .ok_or(StoreError::NotFound("message"))?;
    state.relay.message_stored(&session.id, &message, false);
    Ok(message)
}

/// The compat interface, created on first use.
async fn compat_interface(state: &Arc<AppState>) -> Result<InterfaceRow> {
    Ok(ensure_interface(
        &state.store,
        &state.compat.interface_slug,
        state.relay.now(),
    )
    .await?)
}

/// `POST ?action=messages` (no key) `{session_id, message}`: stores a visitor message durably
/// and queues it for the agent, opening the session on its first message.
async fn messages(
    state: &Arc<AppState>,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response> {
    let fields = json_body(body)?;
    let wire_id = session_id(fields.get("session_id").and_then(Value::as_str))?;
    let text = match fields.get("message").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => text,
        _ => return Err(CompatError::bad_request(errors::MESSAGE_REQUIRED)),
    };
    if text.len() > MAX_MESSAGE_BYTES || text.contains('\0') {
        return Err(CompatError::bad_request(errors::MESSAGE_TOO_LONG));
    }
    let interface = compat_interface(state).await?;
    let now = state.relay.now();
    let (session, is_new) = match state.store.compat_session(&interface.id, wire_id).await? {
        Some(session) => (session, false),
        None => {
            state.limits.session_creation(ip)?;
            let user_agent = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(512).collect());
            let (session, created) = state
                .store
                .open_compat_session(&NewCompatSession {
                    interface_id: interface.id.clone(),
                    compat_id: wire_id.to_string(),
                    visitor_id: new_uid(),
                    ip: Some(ip.to_string()),
                    user_agent,
                    created_at: now,
                })
                .await?;
            if created {
                state.publish(AdminEvent::Session {
                    action: "created".into(),
                    session_id: session.id.clone(),
                    interface: Some(session.interface_slug.clone()),
                    at: airlock_shared::time_from_millis(now),
                });
            }
            (session, created)
        }
    };
    match session.status.as_str() {
        // The old bridge's sessions never ended on their own: a client may come back to one.
        "expired" => state.store.reopen_expired_session(&session.id).await?,
        "ended" => {
            return Err(CompatError::new(
                StatusCode::FORBIDDEN,
                errors::SESSION_ENDED,
            ));
        }
        _ => {}
    }
    state
        .limits
        .message(&session.id, interface.config.rate_limit)?;
    // The old widget sends no idempotency key: every call is a new message.
    let outcome = state
        .relay
        .send(&session.id, &new_id("cmp"), text, &[], None)
        .await?;
    let numbers = state
        .store
        .compat_numbers(&[outcome.message.id.as_str()])
        .await?;
    Ok(success(
        "Message submitted successfully",
        json!({
            "message_id": numbers.get(&outcome.message.id).copied().unwrap_or_default(),
            "session_id": wire_id,
            "message": outcome.message.text,
            "timestamp": message_time(millis(outcome.message.created_at)),
            "uid": session.visitor_id,
            "is_new_user": is_new,
        }),
    ))
}

/// A finished agent message as the old API shows a response. A failed one (the agent never
/// answered) shows the explanation the native widget shows, not its partial text.
fn response_json(message: &Message, wire_id: &str, numbers: &HashMap<String, i64>) -> Value {
    let text = match (&message.status, &message.error) {
        (MessageStatus::Failed, Some(error)) => error,
        _ => &message.text,
    };
    json!({
        "id": numbers.get(&message.id).copied().unwrap_or_default(),
        "session_id": wire_id,
        "response": text,
        "timestamp": message_time(millis(message.updated_at)),
        "message_id": message.reply_to.as_ref().and_then(|id| numbers.get(id)).copied(),
    })
}

/// Numbers for `messages` and the messages they reply to.
async fn numbers_for(state: &Arc<AppState>, messages: &[&Message]) -> Result<HashMap<String, i64>> {
    let mut ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    ids.extend(messages.iter().filter_map(|m| m.reply_to.as_deref()));
    Ok(state.store.compat_numbers(&ids).await?)
}

/// `GET ?action=responses&session_id=…&since=…` (no key): the agent's finished messages of a
/// compat session written after `since`. A session with no message yet has no responses (the
/// old widget polls before its visitor writes).
async fn responses(
    state: &Arc<AppState>,
    ip: std::net::IpAddr,
    query: &HashMap<String, String>,
) -> Result<Response> {
    state.limits.read(ip)?;
    let wire_id = session_id(query.get("session_id").map(String::as_str))?;
    let since = since(query)?;
    let mut responses = Vec::new();
    if let Some(interface) = state
        .store
        .interface_by_slug(&state.compat.interface_slug)
        .await?
        && let Some(session) = state.store.compat_session(&interface.id, wire_id).await?
    {
        let replies = state
            .store
            .replies_since(&session.id, since.unwrap_or(i64::MIN))
            .await?;
        let numbers = numbers_for(state, &replies.iter().collect::<Vec<_>>()).await?;
        responses = replies
            .iter()
            .map(|reply| response_json(reply, wire_id, &numbers))
            .collect();
    }
    Ok(success(
        "Responses retrieved successfully",
        json!({"session_id": wire_id, "responses": responses}),
    ))
}

/// `GET ?action=sessions` (admin key): the compat sessions, most recently active first.
async fn sessions(
    state: &Arc<AppState>,
    parts: &mut Parts,
    query: &HashMap<String, String>,
) -> Result<Response> {
    admin(state, parts).await?;
    let limit = limit(query);
    let offset = offset(query);
    let active_only = !matches!(
        query
            .get("active")
            .map(|a| a.trim().to_ascii_lowercase())
            .as_deref(),
        Some("false" | "0" | "no")
    );
    let (rows, total) = match state
        .store
        .interface_by_slug(&state.compat.interface_slug)
        .await?
    {
        Some(interface) => {
            state
                .store
                .compat_sessions(&interface.id, active_only, limit, offset)
                .await?
        }
        None => (Vec::new(), 0),
    };
    let sessions: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "id": row.compat_id,
                "uid": row.visitor_id,
                "created_at": database_time(row.created_at),
                "last_active": database_time(row.last_activity_at),
                "ip_address": row.ip,
                "metadata": [],
                "message_count": row.user_messages,
                "response_count": row.replies,
            })
        })
        .collect();
    Ok(success(
        "Sessions retrieved successfully",
        json!({
            "sessions": sessions,
            "pagination": {
                "total": total,
                "limit": limit,
                "offset": offset,
                "has_more": i64::from(offset) + (rows.len() as i64) < total,
            },
        }),
    ))
}

/// `GET ?action=session_messages&session_id=…` (admin key): one compat session with all its
/// visitor messages and agent responses.
async fn session_messages(
    state: &Arc<AppState>,
    parts: &mut Parts,
    query: &HashMap<String, String>,
) -> Result<Response> {
    admin(state, parts).await?;
    let wire_id = session_id(query.get("session_id").map(String::as_str))?;
    let not_found = || CompatError::new(StatusCode::NOT_FOUND, errors::SESSION_NOT_FOUND);
    let interface = state
        .store
        .interface_by_slug(&state.compat.interface_slug)
        .await?
        .ok_or_else(not_found)?;
    let session = state
        .store
        .compat_session(&interface.id, wire_id)
        .await?
        .ok_or_else(not_found)?;
    let ip = state.store.session_ip(&session.id).await?;
    let transcript = state.store.transcript(&session.id).await?;
    let numbers = numbers_for(state, &transcript.iter().collect::<Vec<_>>()).await?;
    let messages: Vec<Value> = transcript
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| {
            json!({
                "id": numbers.get(&m.id).copied().unwrap_or_default(),
                "session_id": wire_id,
                "message": m.text,
                "timestamp": message_time(millis(m.created_at)),
            })
        })
        .collect();
    let responses: Vec<Value> = transcript
        .iter()
        .filter(|m| {
            m.role == Role::Assistant
                && matches!(m.status, MessageStatus::Complete | MessageStatus::Failed)
        })
        .map(|m| response_json(m, wire_id, &numbers))
        .collect();
    Ok(success(
        "Session messages retrieved",
        json!({
            "session": {
                "id": wire_id,
                "uid": session.visitor_id,
                "created_at": database_time(session.created_at),
                "last_active": database_time(session.last_activity_at),
                "ip_address": ip,
                "metadata": "[]",
            },
            "messages": messages,
            "responses": responses,
        }),
    ))
}
