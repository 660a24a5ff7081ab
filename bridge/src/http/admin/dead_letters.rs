//! `/admin/dead-letters…`: items the agent could not answer.

use std::sync::Arc;

use airlock_shared::admin::{DeadLetter, List};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use airlock_shared::error::ErrorEnvelope;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiQuery};

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
