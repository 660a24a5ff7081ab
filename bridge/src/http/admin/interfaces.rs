//! `/admin/interfaces…`: create, read, change, publish, duplicate, preview and delete chat
//! interfaces.

use std::sync::Arc;

use airlock_shared::admin::{
    CreateInterface, DuplicateInterface, Interface, InterfaceDeleted, List, PreviewToken,
    UpdateInterface,
};
use airlock_shared::error::ErrorEnvelope;
use airlock_shared::time_from_millis;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{AdminAuth, ApiJson, SlugPath};
use crate::store::{InterfaceRow, StoreError};
use crate::{manage, preview};

/// The bridge's public base URL for embed snippets: the configured `public_url`, else the
/// scheme and `Host` the admin reached it by.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

fn not_found(slug: &str) -> ApiError {
    ApiError::not_found(
        "interface_not_found",
        format!("No interface is called `{slug}`."),
    )
}

/// Maps "no such interface" to a 404 naming the slug; other errors as usual.
fn or_not_found(slug: &str) -> impl FnOnce(manage::ManageError) -> ApiError + '_ {
    move |err| match err {
        manage::ManageError::Store(StoreError::NotFound("interface")) => not_found(slug),
        other => other.into(),
    }
}

async fn find(state: &AppState, slug: &str) -> Result<InterfaceRow, ApiError> {
    state
        .store
        .interface_by_slug(slug)
        .await?
        .ok_or_else(|| not_found(slug))
}

#[utoipa::path(get, path = "/admin/interfaces", tag = "admin", summary = "All chat interfaces",
    security(("admin_key" = [])), responses((status = 200, body = List<Interface>), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<List<Interface>>, ApiError> {
    let base = base_url(&state, &headers);
    let rows = state.store.list_interfaces().await?;
    Ok(Json(List {
        items: rows.iter().map(|r| r.to_admin(&base)).collect(),
    }))
}

#[utoipa::path(post, path = "/admin/interfaces", tag = "admin", summary = "Create a chat interface (a draft unless `publish`)",
    request_body = CreateInterface, security(("admin_key" = [])),
    responses((status = 201, body = Interface), (status = 401, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn create(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateInterface>,
) -> Result<(StatusCode, Json<Interface>), ApiError> {
    let row = manage::create_interface(&state.store, request, state.relay.now()).await?;
    super::audit(&state, &auth, "interface.create", &row.slug, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(row.to_admin(&base_url(&state, &headers))),
    ))
}

#[utoipa::path(get, path = "/admin/interfaces/{slug}", tag = "admin", summary = "One interface, draft or published, with its embed snippets",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    _: AdminAuth,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SlugPath(slug): SlugPath,
) -> Result<Json<Interface>, ApiError> {
    let row = find(&state, &slug).await?;
    Ok(Json(row.to_admin(&base_url(&state, &headers))))
}

/// `PATCH`: the fields present replace the stored ones; the result is validated as a whole.
#[utoipa::path(patch, path = "/admin/interfaces/{slug}", tag = "admin", summary = "Change some fields (a rename too)",
    params(("slug" = String, Path)), request_body = UpdateInterface, security(("admin_key" = [])),
    responses((status = 200, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn update(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SlugPath(slug): SlugPath,
    ApiJson(patch): ApiJson<UpdateInterface>,
) -> Result<Json<Interface>, ApiError> {
    // The names of the changed fields, for the audit log (not their values: prompts can be long).
    let changed: Vec<String> = match serde_json::to_value(&patch) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let row = manage::update_interface(&state.store, &slug, patch, state.relay.now())
        .await
        .map_err(or_not_found(&slug))?;
    if changed.iter().any(|field| field == "connectors") {
        // Items this change lets a connector serve: its waiting claims look again.
        state.relay.connectors_reassigned();
    }
    let mut detail = json!({ "fields": changed });
    if row.slug != slug {
        detail["renamed_from"] = json!(slug);
    }
    super::audit(&state, &auth, "interface.update", &row.slug, Some(detail)).await?;
    Ok(Json(row.to_admin(&base_url(&state, &headers))))
}

/// `DELETE`: the interface and all its sessions.
#[utoipa::path(delete, path = "/admin/interfaces/{slug}", tag = "admin", summary = "Delete an interface with all its sessions",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = InterfaceDeleted), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    SlugPath(slug): SlugPath,
) -> Result<Json<InterfaceDeleted>, ApiError> {
    let sessions = match state.store.delete_interface(&slug).await {
        Ok(sessions) => sessions,
        Err(StoreError::NotFound(_)) => return Err(not_found(&slug)),
        Err(err) => return Err(err.into()),
    };
    super::audit(
        &state,
        &auth,
        "interface.delete",
        &slug,
        Some(json!({ "sessions": sessions })),
    )
    .await?;
    Ok(Json(InterfaceDeleted {
        deleted: slug,
        sessions,
    }))
}

/// `POST …/duplicate`: a draft copy under a new slug.
#[utoipa::path(post, path = "/admin/interfaces/{slug}/duplicate", tag = "admin", summary = "Copy an interface's configuration into a new draft",
    params(("slug" = String, Path)), request_body = DuplicateInterface, security(("admin_key" = [])),
    responses((status = 201, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn duplicate(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SlugPath(slug): SlugPath,
    ApiJson(request): ApiJson<DuplicateInterface>,
) -> Result<(StatusCode, Json<Interface>), ApiError> {
    let row = manage::duplicate_interface(&state.store, &slug, request, state.relay.now())
        .await
        .map_err(or_not_found(&slug))?;
    super::audit(
        &state,
        &auth,
        "interface.duplicate",
        &row.slug,
        Some(json!({ "from": slug })),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(row.to_admin(&base_url(&state, &headers))),
    ))
}

/// `POST …/preview`: a 15-minute token that opens the interface even as a draft.
#[utoipa::path(post, path = "/admin/interfaces/{slug}/preview", tag = "admin", summary = "A short-lived token to open a draft (`?preview=` on the pages)",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = PreviewToken), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn preview(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    SlugPath(slug): SlugPath,
) -> Result<Json<PreviewToken>, ApiError> {
    let row = find(&state, &slug).await?;
    let (token, expires_at) = preview::issue(&state.store, &row.slug, state.relay.now()).await?;
    super::audit(&state, &auth, "interface.preview", &row.slug, None).await?;
    Ok(Json(PreviewToken {
        token,
        expires_at: time_from_millis(expires_at),
    }))
}

#[utoipa::path(post, path = "/admin/interfaces/{slug}/publish", tag = "admin", summary = "Publish: visitors can use it",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn publish(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SlugPath(slug): SlugPath,
) -> Result<Json<Interface>, ApiError> {
    let answer = set_published(&state, &headers, &slug, true).await?;
    super::audit(&state, &auth, "interface.publish", &slug, None).await?;
    Ok(answer)
}

#[utoipa::path(post, path = "/admin/interfaces/{slug}/unpublish", tag = "admin", summary = "Back to draft: invisible to visitors",
    params(("slug" = String, Path)), security(("admin_key" = [])),
    responses((status = 200, body = Interface), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn unpublish(
    auth: AdminAuth,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SlugPath(slug): SlugPath,
) -> Result<Json<Interface>, ApiError> {
    let answer = set_published(&state, &headers, &slug, false).await?;
    super::audit(&state, &auth, "interface.unpublish", &slug, None).await?;
    Ok(answer)
}

async fn set_published(
    state: &AppState,
    headers: &HeaderMap,
    slug: &str,
    published: bool,
) -> Result<Json<Interface>, ApiError> {
    let row = match state
        .store
        .set_interface_published(slug, published, state.relay.now())
        .await
    {
        Ok(row) => row,
        Err(StoreError::NotFound(_)) => return Err(not_found(slug)),
        Err(err) => return Err(err.into()),
    };
    Ok(Json(row.to_admin(&base_url(state, headers))))
}
