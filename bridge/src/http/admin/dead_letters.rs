//! `/admin/dead-letters…`: items the agent could not answer; retry them or discard them.

use std::sync::Arc;

use airlock_shared::Message;
use airlock_shared::admin::{DeadLetter, DeletedId, List};
use airlock_shared::error::ErrorEnvelope;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiQuery, DeadLetterIdPath};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// How many, newest first, 1–500 (default 50)
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", summary = "Messages the agent could not answer",
    params(DeadLetterQuery), security(("admin_key" = [])),
    responses((status = 200, body = List<DeadLetter>), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> Result<Json<List<DeadLetter>>, ApiError> {
    let items = state
        .store
        .dead_letters(query.limit.unwrap_or(50).clamp(1, 500))
        .await?;
    Ok(Json(List { items }))
}

/// `POST /admin/dead-letters/{message_id}/retry`: back to the queue with attempts reset; answers
/// the visitor's message, `queued` again.
#[utoipa::path(post, path = "/admin/dead-letters/{message_id}/retry", tag = "admin", summary = "Queue a dead letter again, attempts reset",
    params(("message_id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Message), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn retry(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    DeadLetterIdPath(message_id): DeadLetterIdPath,
) -> Result<Json<Message>, ApiError> {
    let message = state.relay.retry_dead_letter(&message_id).await?;
    super::audit(&state, &auth, "dead_letter.retry", &message_id, None).await?;
    Ok(Json(message))
}

/// `DELETE /admin/dead-letters/{message_id}`: drop it from the list; the visitor's log keeps
/// showing that it failed.
#[utoipa::path(delete, path = "/admin/dead-letters/{message_id}", tag = "admin", summary = "Discard a dead letter; the message keeps its error",
    params(("message_id" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = DeletedId), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn discard(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    DeadLetterIdPath(message_id): DeadLetterIdPath,
) -> Result<Json<DeletedId>, ApiError> {
    state.store.discard_dead_letter(&message_id).await?;
    super::audit(&state, &auth, "dead_letter.discard", &message_id, None).await?;
    Ok(Json(DeletedId {
        deleted: message_id,
    }))
}
