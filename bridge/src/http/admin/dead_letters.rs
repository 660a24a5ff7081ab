//! `/admin/dead-letters…`: items the agent could not answer; retry them or discard them.

use std::sync::Arc;

use airlock_shared::Message;
use airlock_shared::admin::{DeadLetter, DeletedId, List};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiPath, ApiQuery};

#[derive(Deserialize)]
pub struct DeadLetterQuery {
    limit: Option<u32>,
}

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
pub async fn retry(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(message_id): ApiPath<String>,
) -> Result<Json<Message>, ApiError> {
    let message = state.relay.retry_dead_letter(&message_id).await?;
    super::audit(&state, &auth, "dead_letter.retry", &message_id, None).await?;
    Ok(Json(message))
}

/// `DELETE /admin/dead-letters/{message_id}`: drop it from the list; the visitor's log keeps
/// showing that it failed.
pub async fn discard(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    ApiPath(message_id): ApiPath<String>,
) -> Result<Json<DeletedId>, ApiError> {
    state.store.discard_dead_letter(&message_id).await?;
    super::audit(&state, &auth, "dead_letter.discard", &message_id, None).await?;
    Ok(Json(DeletedId {
        deleted: message_id,
    }))
}
