//! The visitor API: public interface config, sessions, sending messages, and the long-poll that
//! shows replies as they stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use airlock_shared::admin::{AdminEvent, VisitorIdentity};
use airlock_shared::error::ErrorEnvelope;
use airlock_shared::visitor::{
    AttachmentUploaded, CreateSession, MessageAccepted, MessageList, PublicInterface, SendMessage,
    SessionCreated,
};
use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use tower::limit::GlobalConcurrencyLimitLayer;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, SessionIdPath, SlugPath, VisitorSession, visitor_session};
use crate::app::AppState;
use crate::client_ip::ClientIp;
use crate::identity::{self, IdentityError};
use crate::store::{InterfaceRow, NewAttachment, NewSession, SessionRow};
use crate::tokens::{RESUME_TOKEN_PREFIX, SESSION_TOKEN_PREFIX, hash_secret, new_secret};
use crate::validate;

/// Longest page metadata kept per field (URLs, titles).
const MAX_META_CHARS: usize = 2_048;

/// Event streams being started at once, at most; more wait their turn before their handler
/// begins.
///
/// Starting a stream reads the session (and on the way the agent's status and what is new) from
/// the database. On PostgreSQL those reads queue for the pool's connections, and when thousands
/// of visitors connect at once — the bridge restarted, say — thousands of handlers waited there
/// together, each holding some 3.5 KB of request state. Freed once its stream had started, that
/// state left holes between the blocks the streams keep, which the allocator could not give
/// back: 10,000 streams opened at once took 151–172 MiB on PostgreSQL, against 137–138 when the
/// visitors opened them 256 at a time, and 138–150 with this limit (docs/performance-history.md,
/// "Sixteenth round"). Waiting here, a request holds only itself. Well above the connections a database pool has, so the database stays as
/// busy as before; on SQLite, whose reads do not wait, a stream starts at once.
const STARTING_STREAMS: usize = 64;

/// Holds back the event streams beyond [`STARTING_STREAMS`] being started: a request waits in
/// the layer's `poll_ready`, before its handler's future exists, and its permit goes when the
/// handler has answered (the stream itself is not counted).
fn starting_streams() -> GlobalConcurrencyLimitLayer {
    GlobalConcurrencyLimitLayer::new(STARTING_STREAMS)
}

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(interface_config))
        .routes(routes!(open_session))
        .routes(routes!(send_message, list_messages))
        .routes(routes!(events).layer(starting_streams()))
        // The only visitor call with a big body; the interface's own limit applies inside.
        .routes(routes!(upload).layer(DefaultBodyLimit::max(
            validate::MAX_UPLOAD_MB as usize * 1024 * 1024 + 64 * 1024,
        )))
}

/// A preview token in the query string (`?preview=`); the visitor API also takes it in the
/// `X-Airlock-Preview` header, the pages only here.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// A preview token from `POST /api/v1/admin/interfaces/{slug}/preview`
    pub preview: Option<String>,
}

/// The header carrying a preview token (see [`crate::preview`]).
pub const PREVIEW_HEADER: &str = "x-airlock-preview";

/// A published interface by slug; drafts are invisible to visitors, except to holders of a
/// valid preview token for that interface.
async fn visible_interface(
    state: &AppState,
    slug: &str,
    headers: &HeaderMap,
    query: PreviewQuery,
) -> Result<InterfaceRow, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "interface_not_found",
            format!("No published chat interface is called `{slug}`."),
        )
    };
    let interface = state
        .store
        .interface_by_slug(slug)
        .await?
        .ok_or_else(not_found)?;
    if interface.is_published() {
        return Ok(interface);
    }
    let token = headers
        .get(PREVIEW_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(query.preview);
    match token {
        Some(token)
            if crate::preview::verify(&state.store, &token, slug, state.relay.now()).await? =>
        {
            Ok(interface)
        }
        _ => Err(not_found()),
    }
}

#[utoipa::path(get, path = "/interfaces/{slug}", tag = "visitor",
    summary = "A published chat interface's public configuration",
    params(("slug" = String, Path, description = "The interface's slug"), PreviewQuery),
    responses((status = 200, body = PublicInterface), (status = 404, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn interface_config(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    SlugPath(slug): SlugPath,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PreviewQuery>,
) -> Result<Json<PublicInterface>, ApiError> {
    state.limits.read(ip)?;
    let interface = visible_interface(&state, &slug, &headers, query).await?;
    let agent_online = state.agent_online(&interface.id).await?;
    let config = interface.config;
    Ok(Json(PublicInterface {
        slug: interface.slug,
        title: config.title,
        description: config.description,
        welcome_message: config.welcome_message,
        placeholder: config.placeholder,
        suggested_prompts: config.suggested_prompts,
        persistence: config.persistence,
        agent_online,
        locale: config.locale,
        appearance: config.appearance,
        launcher: config.launcher,
        uploads: config.uploads,
    }))
}

/// Keeps at most `MAX_META_CHARS` of an optional piece of metadata, without control characters
/// (one-line values; a title with a stray one is still worth keeping).
fn clip(value: Option<String>) -> Option<String> {
    value
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(MAX_META_CHARS)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<String> {
    clip(headers.get(name)?.to_str().ok().map(str::to_string))
}

#[utoipa::path(post, path = "/interfaces/{slug}/sessions", tag = "visitor",
    summary = "Start a session, or resume one with its resume token (or, signed in, from another device)",
    params(("slug" = String, Path, description = "The interface's slug"), PreviewQuery),
    request_body = CreateSession,
    responses((status = 201, body = SessionCreated), (status = 200, description = "Resumed", body = SessionCreated),
        (status = 400, body = ErrorEnvelope),
        (status = 401, description = "`identity_required` or `invalid_identity`", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 422, description = "A field refused, or `identity_not_configured`", body = ErrorEnvelope),
        (status = 429, description = "Too many new sessions from this address; see `Retry-After`", body = ErrorEnvelope)))]
async fn open_session(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    SlugPath(slug): SlugPath,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PreviewQuery>,
    ApiJson(request): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    let interface = visible_interface(&state, &slug, &headers, query).await?;
    let now = state.relay.now();
    let identity = visitor_identity(&interface, &request, now)?;
    let user_id = identity.as_ref().map(|i| i.user_id.as_str());
    let idle_since = now - interface.config.session_timeout_ms();
    let session_token = new_secret(SESSION_TOKEN_PREFIX);

    if let Some(resume_token) = request.resume_token.as_deref() {
        let resumed = state
            .store
            .resume_session(
                &interface.id,
                &hash_secret(resume_token),
                &hash_secret(&session_token),
                user_id,
                idle_since,
                now,
            )
            .await?;
        if let Some(session) = resumed {
            return resumed_answer(&state, session, session_token, resume_token.to_string()).await;
        }
        // Unknown, ended, expired, or another visitor's: start afresh (`resumed: false`).
    }

    // Only new sessions count: a visitor resuming on every page view is not refused.
    state.limits.session_creation(ip)?;
    let resume_token = new_secret(RESUME_TOKEN_PREFIX);
    // A signed-in visitor's conversation follows them: another device joins it.
    if let Some(identity) = identity.as_ref().filter(|_| !request.fresh) {
        let joined = state
            .store
            .join_identity_session(
                &interface.id,
                identity,
                &hash_secret(&session_token),
                &hash_secret(&resume_token),
                idle_since,
                now,
            )
            .await?;
        if let Some(session) = joined {
            return resumed_answer(&state, session, session_token, resume_token).await;
        }
    }

    let session = state
        .store
        .create_session(
            &NewSession {
                interface_id: interface.id,
                token_hash: hash_secret(&session_token),
                resume_hash: hash_secret(&resume_token),
                page_url: clip(request.page_url),
                page_title: clip(request.page_title),
                referrer: clip(request.referrer),
                locale: clip(request.locale),
                ip: Some(ip.to_string()),
                user_agent: header(&headers, axum::http::header::USER_AGENT),
                identity,
            },
            now,
        )
        .await?;
    state.publish(AdminEvent::Session {
        action: "created".into(),
        session_id: session.id.clone(),
        interface: Some(session.interface_slug.clone()),
        at: airlock_shared::time_from_millis(now),
    });
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            session_id: session.id,
            session_token,
            resume_token,
            visitor_id: session.visitor_id,
            resumed: false,
            cursor: session.last_seq,
            messages: Vec::new(),
        }),
    ))
}

/// Who the visitor opening a session is: the verified identity of their `identity_token`, or
/// `None` for an anonymous visitor where the interface allows one.
fn visitor_identity(
    interface: &InterfaceRow,
    request: &CreateSession,
    now: i64,
) -> Result<Option<VisitorIdentity>, ApiError> {
    let config = &interface.config;
    let Some(token) = request.identity_token.as_deref() else {
        if config.require_identity {
            let site = request
                .page_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "the website that shows it".into());
            return Err(ApiError::unauthorized(
                "identity_required",
                format!(
                    "This chat needs you to be signed in on {site}. Sign in there, then open \
                     the chat again."
                ),
            ));
        }
        return Ok(None);
    };
    let Some(verification) = &config.identity else {
        return Err(ApiError::unprocessable(
            "identity_not_configured",
            "This chat does not accept identity tokens: its admin has not set up how to verify \
             them (`identity` in the interface's settings).",
        ));
    };
    match identity::verify(verification, token, now) {
        Ok(identity) => Ok(Some(identity)),
        Err(IdentityError::Misconfigured(reason)) => Err(ApiError::internal(anyhow::anyhow!(
            "interface `{}`: {reason}",
            interface.slug
        ))),
        Err(refused) => Err(ApiError::unauthorized(
            "invalid_identity",
            refused.to_string(),
        )),
    }
}

/// The answer for an existing session opened again: its history, and the tokens of this tab.
async fn resumed_answer(
    state: &AppState,
    session: SessionRow,
    session_token: String,
    resume_token: String,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    let messages = state.store.transcript(&session.id).await?;
    Ok((
        StatusCode::OK,
        Json(SessionCreated {
            session_id: session.id,
            session_token,
            resume_token,
            visitor_id: session.visitor_id,
            resumed: true,
            cursor: session.last_seq,
            messages,
        }),
    ))
}

#[utoipa::path(post, path = "/sessions/{id}/messages", tag = "visitor",
    summary = "Send a message (idempotent by client_id); 202 once it is stored",
    params(("id" = String, Path, description = "Session id")),
    request_body = SendMessage, security(("session_token" = [])),
    responses((status = 202, body = MessageAccepted), (status = 401, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, description = "Over the interface's message rate limit (nothing stored); see `Retry-After`", body = ErrorEnvelope)))]
async fn send_message(
    State(state): State<Arc<AppState>>,
    SessionIdPath(session_id): SessionIdPath,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SendMessage>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    // Whether this is a retry of a message already stored is read at the same time as the
    // session (by the path's id, which the session must have): one wait for the database fewer
    // before the message is stored. Its answer is used only once the token is checked.
    let (visitor, stored) = tokio::join!(
        visitor_session(&state, &headers, &session_id),
        state
            .store
            .message_by_client_id(&session_id, &request.client_id),
    );
    let VisitorSession { session, interface } = visitor?;
    validate::client_id(&request.client_id)
        .map_err(|m| ApiError::unprocessable("invalid_client_id", m))?;
    validate::typed_text("text", &request.text)
        .map_err(|m| ApiError::unprocessable("invalid_text", m))?;
    let config = interface.config;
    if request.attachments.is_empty() {
        validate::text("text", &request.text, state.max_message_chars)
            .map_err(|m| ApiError::unprocessable("invalid_text", m))?;
    } else {
        // Files may go without words, but not with too many of them.
        if request.text.chars().count() > state.max_message_chars {
            return Err(ApiError::unprocessable(
                "invalid_text",
                format!("text is longer than {} characters", state.max_message_chars),
            ));
        }
        let uploads = &config.uploads;
        if request.attachments.len() > uploads.max_files as usize {
            return Err(ApiError::unprocessable(
                "invalid_attachments",
                format!("at most {} files per message", uploads.max_files),
            ));
        }
    }
    // A retry of a message already stored (same client_id) is neither refused nor counted: it is
    // answered from the store below, as the first send was. Only new messages take from the
    // session's budget, before anything is written.
    let already_stored = stored?.is_some();
    if !already_stored {
        state.limits.message(&session.id, config.rate_limit)?;
    }
    let outcome = state
        .relay
        .send(
            &session.id,
            &request.client_id,
            &request.text,
            &request.attachments,
            request.context.as_ref(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageAccepted {
            message: outcome.message,
        }),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    after: i64,
    #[serde(default)]
    wait: u64,
}

#[utoipa::path(get, path = "/sessions/{id}/messages", tag = "visitor",
    summary = "Messages changed after a cursor; long-polls up to `wait` seconds",
    params(("id" = String, Path, description = "Session id"),
        ("after" = Option<i64>, Query, description = "The cursor of the last answer (0 for all)"),
        ("wait" = Option<u64>, Query, description = "Seconds to hold the request open when nothing changed (≤ 50)")),
    security(("session_token" = [])),
    responses((status = 200, body = MessageList), (status = 401, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn list_messages(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    SessionIdPath(session_id): SessionIdPath,
    ApiQuery(query): ApiQuery<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<MessageList>, ApiError> {
    state.limits.read(ip)?;
    // Boxed, here and in `events`: the look-up's future is large, and a request that then waits
    // for up to 30 s should not carry its space along (10,000 held requests, 10,000 copies).
    let session = Box::pin(visitor_session(&state, &headers, &session_id))
        .await?
        .session;
    // Nor the request's headers: the copy the extractor made is freed before the wait.
    drop(headers);
    let wait = Duration::from_secs(query.wait.min(airlock_shared::MAX_VISITOR_WAIT_SECS));
    let messages = state.relay.messages(&session.id, query.after, wait).await?;
    let cursor = messages
        .iter()
        .map(|m| m.rev)
        .max()
        .unwrap_or(query.after)
        .max(query.after);
    let agent_online = state.agent_online(&session.interface_id).await?;
    Ok(Json(MessageList {
        messages,
        cursor,
        agent_online,
    }))
}

/// How long one wait of the event stream lasts before it looks at the agent's status again, and
/// sends a keep-alive comment if nothing else: the longest an open stream stays silent, short
/// enough that proxies do not close it as idle.
const EVENT_WAIT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<i64>,
}

/// How often at most a busy event stream looks at the agent's status again (a quiet one looks
/// after every wait).
const STATUS_RECHECK: Duration = Duration::from_secs(2);

/// Where an event stream is: the last change sent, and the agent status last told.
struct EventCursor {
    state: Arc<AppState>,
    session_id: String,
    interface_id: String,
    cursor: i64,
    agent_online: Option<bool>,
    status_checked: tokio::time::Instant,
}

/// `GET /sessions/{id}/events`: Server-Sent Events of the session's changes.
///
/// `message` events carry a whole message each time it is new or changed (`id:` is its `rev`, so
/// a reconnect with `Last-Event-ID` resumes exactly after the last change seen); `status` events
/// carry `{"agent_online": bool}` on connect and when it changes (noticed within a wait, or
/// within seconds while messages flow). Comments keep idle connections open, and
/// `X-Accel-Buffering: no` stops nginx from holding events back. The stream ends when the bridge
/// shuts down; clients reconnect.
#[utoipa::path(get, path = "/sessions/{id}/events", tag = "visitor",
    summary = "Server-sent events: `message` (a new or changed message) and `status` (agent online)",
    params(("id" = String, Path, description = "Session id"),
        ("after" = Option<i64>, Query, description = "Resume after this cursor (or send Last-Event-ID)")),
    security(("session_token" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "An event stream"),
        (status = 401, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
async fn events(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    SessionIdPath(session_id): SessionIdPath,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.limits.read(ip)?;
    let session = Box::pin(visitor_session(&state, &headers, &session_id))
        .await?
        .session;
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a number")
                })?,
        ),
        None => None,
    };
    let start = EventCursor {
        state,
        session_id: session.id,
        interface_id: session.interface_id,
        cursor: last_event_id.or(query.after).unwrap_or(0),
        agent_online: None,
        status_checked: tokio::time::Instant::now(),
    };
    let stream = futures_util::stream::unfold(start, next_events)
        .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    // The keep-alive comments come from `next_events` after each quiet wait, not from a timer
    // of axum's beside it: one timer fewer held by each of thousands of waiting streams.
    let sse = Sse::new(stream);
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response())
}

/// The next batch of events, waiting for one; `None` ends the stream.
async fn next_events(mut at: EventCursor) -> Option<(Vec<Event>, EventCursor)> {
    loop {
        if at.state.relay.is_shutting_down() {
            return None;
        }
        let mut events = Vec::new();
        // The agent status first (on connect, then after every quiet wait), so a client knows
        // at once whether its messages will be answered now.
        let waited_quietly = at.agent_online.is_some();
        let messages = if at.agent_online.is_none() {
            Vec::new()
        } else {
            match at
                .state
                .relay
                .messages(&at.session_id, at.cursor, EVENT_WAIT)
                .await
            {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(error = %err, "event stream ended: the database failed");
                    return None;
                }
            }
        };
        // Also while busy, so an agent that just came back is told with its first reply.
        if messages.is_empty() || !waited_quietly || at.status_checked.elapsed() >= STATUS_RECHECK {
            at.status_checked = tokio::time::Instant::now();
            let online = at.state.agent_online(&at.interface_id).await.ok()?;
            if at.agent_online != Some(online) {
                at.agent_online = Some(online);
                events.push(
                    Event::default()
                        .event("status")
                        .json_data(serde_json::json!({"agent_online": online}))
                        .ok()?,
                );
            }
        }
        for message in messages {
            at.cursor = at.cursor.max(message.rev);
            events.push(
                Event::default()
                    .event("message")
                    .id(message.rev.to_string())
                    .json_data(&message)
                    .ok()?,
            );
        }
        if events.is_empty() && waited_quietly {
            events.push(Event::default().comment(""));
        }
        if !events.is_empty() {
            return Some((events, at));
        }
    }
}

/// `POST /sessions/{id}/attachments`: one file, as the multipart part `file`, checked against the
/// interface's limits — size, declared type, and content that really is that type — before it
/// is stored. The visitor then sends its id with a message.
#[utoipa::path(post, path = "/sessions/{id}/attachments", tag = "visitor",
    summary = "Upload a file (multipart field `file`) to send with the next message",
    params(("id" = String, Path, description = "Session id")),
    request_body(content_type = "multipart/form-data", description = "One part named `file`"),
    security(("session_token" = [])),
    responses((status = 201, body = AttachmentUploaded), (status = 403, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn upload(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    SessionIdPath(session_id): SessionIdPath,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<AttachmentUploaded>), ApiError> {
    state.limits.read(ip)?;
    let VisitorSession { session, interface } =
        visitor_session(&state, &headers, &session_id).await?;
    let uploads = interface.config.uploads;
    if !uploads.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "uploads_disabled",
            "This chat does not accept files.",
        ));
    }
    let invalid = |message: &str| ApiError::bad_request("invalid_upload", message);
    let mut multipart = multipart.map_err(|e| invalid(&e.body_text()))?;
    let max_bytes = uploads.max_mb as usize * 1024 * 1024;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("Files may be at most {} MB.", uploads.max_mb),
        )
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, &too_large))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let filename = clean_filename(field.file_name().unwrap_or(""));
        let declared = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !uploads.allowed_types.contains(&declared) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "type_not_allowed",
                format!(
                    "Files of type {declared} are not accepted here; allowed: {}.",
                    uploads.allowed_types.join(", ")
                ),
            ));
        }
        let mut data = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| multipart_error(e, &too_large))?
        {
            if data.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
        if data.is_empty() {
            return Err(invalid("The file is empty."));
        }
        content_matches(&declared, &data).map_err(|message| {
            ApiError::unprocessable("content_mismatch", format!("{filename}: {message}"))
        })?;
        let attachment = state
            .store
            .store_attachment(
                NewAttachment {
                    session_id: session.id,
                    interface_id: session.interface_id,
                    filename,
                    content_type: declared,
                    data,
                },
                state.relay.now(),
            )
            .await?;
        return Ok((StatusCode::CREATED, Json(AttachmentUploaded { attachment })));
    }
    Err(invalid(
        "Send the file as a multipart/form-data part named `file`.",
    ))
}

/// A broken or oversized multipart body, in the envelope.
fn multipart_error(error: MultipartError, too_large: &dyn Fn() -> ApiError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::bad_request("invalid_upload", error.body_text())
    }
}

/// Whether the bytes are what the declared type says: a sniffed signature must agree, a type
/// with a known signature must have it, and text must be UTF-8.
fn content_matches(declared: &str, data: &[u8]) -> Result<(), String> {
    match infer::get(data).map(|kind| kind.mime_type()) {
        Some(found) if found == declared => Ok(()),
        Some(found) => Err(format!("the file looks like {found}, not {declared}")),
        None if declared.starts_with("text/") => std::str::from_utf8(data)
            .map(drop)
            .map_err(|_| "the file is not UTF-8 text".to_string()),
        None if infer::is_mime_supported(declared) => {
            Err(format!("the file is not a valid {declared}"))
        }
        None => Ok(()),
    }
}

/// The last path segment of a client's file name, without control characters, at most 200
/// characters; `file` when nothing is left.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "file".to_string()
    } else {
        clean.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use tokio::sync::Semaphore;
    use tower::ServiceExt;

    use super::*;

    /// Handlers that count themselves while they run, and wait until let go.
    #[derive(Clone)]
    struct Running {
        now: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        release: Arc<Semaphore>,
    }

    /// Stands in for [`events`]: counts itself while it runs, until let go.
    #[utoipa::path(get, path = "/events", responses((status = 200)))]
    async fn counted(State(running): State<Running>) -> &'static str {
        let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
        running.most.fetch_max(now, Ordering::SeqCst);
        running.release.acquire().await.unwrap().forget();
        running.now.fetch_sub(1, Ordering::SeqCst);
        "started"
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn event_streams_beyond_the_limit_wait_to_start_and_all_start() {
        let running = Running {
            now: Arc::default(),
            most: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
        };
        // Routed as `routes()` routes `events`.
        let (app, _) = OpenApiRouter::new()
            .routes(routes!(counted).layer(starting_streams()))
            .with_state(running.clone())
            .split_for_parts();
        let asked = STARTING_STREAMS + 10;
        let requests: Vec<_> = (0..asked)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    let request = Request::get("/events").body(Body::empty()).unwrap();
                    app.oneshot(request).await.unwrap().status()
                })
            })
            .collect();
        // The limit's worth start; given time, no more do.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while running.now.load(Ordering::SeqCst) < STARTING_STREAMS {
            assert!(tokio::time::Instant::now() < deadline, "too few started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(running.now.load(Ordering::SeqCst), STARTING_STREAMS);
        running.release.add_permits(asked);
        for request in requests {
            assert_eq!(request.await.unwrap(), StatusCode::OK);
        }
        assert_eq!(running.most.load(Ordering::SeqCst), STARTING_STREAMS);
    }
}
