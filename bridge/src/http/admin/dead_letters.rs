//! `/admin/dead-letters…`: items the agent could not answer.

use std::sync::Arc;

use airlock_shared::admin::{DeadLetter, List};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiQuery};

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
