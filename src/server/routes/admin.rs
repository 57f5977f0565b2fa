//! Admin JSON API (`/admin/api/…`) and `/metrics`. Every admin call checks `ADMIN_TOKEN` as a
//! bearer token on the server; with no `ADMIN_TOKEN` configured the admin API is off.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::admin::{AddKeys, LogQuery, PinProxy};
use crate::gateway::admin::PinFailure;
use crate::gateway::pool::Verdict;
use crate::server::auth::bearer_from;
use crate::server::AppState;

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "admin_error", "param": null, "code": null}})),
    )
        .into_response()
}

/// Middleware: the admin token, or nothing.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.settings.admin_token else {
        return error(
            StatusCode::FORBIDDEN,
            "The admin API is disabled: set ADMIN_TOKEN to enable it.",
        );
    };
    match bearer_from(req.headers()) {
        Some(t) if expected.matches(t) => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "Wrong admin token."),
        None => error(
            StatusCode::UNAUTHORIZED,
            "Missing admin token: send it as 'Authorization: Bearer <ADMIN_TOKEN>'.",
        ),
    }
}

pub async fn keys(State(state): State<AppState>) -> Response {
    Json(state.admin.keys()).into_response()
}

pub async fn summary(State(state): State<AppState>) -> Response {
    let mut summary = state.admin.summary();
    summary.replica = state.shared.as_ref().map(|s| crate::api::admin::ReplicaInfo {
        name: s.replica().to_string(),
        redis_up: s.is_up(),
    });
    Json(summary).into_response()
}

pub async fn add_keys(State(state): State<AppState>, body: Result<Json<AddKeys>, JsonRejection>) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "Expected a JSON body {\"keys\": \"key1, key2 …\"}.",
        );
    };
    match state.admin.add(&body.keys).await {
        Ok(result) => Json(result).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Could not store the keys: {e}"),
        ),
    }
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("No key with id {id:?}."))
}

pub async fn remove_key(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.admin.remove(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => not_found(&id),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub async fn key_action(State(state): State<AppState>, Path((id, action)): Path<(String, String)>) -> Response {
    let result = match action.as_str() {
        "disable" => state.admin.set_disabled(&id, true).await,
        "enable" => state.admin.set_disabled(&id, false).await,
        "reset" => Ok(state.admin.reset(&id)),
        "validate" => match state.admin.validate(&id).await {
            Some(verdict) => {
                let (works, result, detail) = match verdict {
                    Verdict::Works => (Some(true), "works", None),
                    Verdict::Rejected(m) => (Some(false), "rejected", Some(m)),
                    Verdict::Inconclusive(m) => (None, "inconclusive", Some(m)),
                };
                return Json(json!({"id": id, "works": works, "result": result, "detail": detail})).into_response();
            }
            None => Ok(false),
        },
        other => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Unknown action {other:?}: use disable, enable, reset or validate."),
            )
        }
    };
    match result {
        Ok(true) => match state.admin.keys().into_iter().find(|k| k.id == id) {
            Some(view) => Json(view).into_response(),
            None => not_found(&id),
        },
        Ok(false) => not_found(&id),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub async fn proxies(State(state): State<AppState>) -> Response {
    Json(state.admin.proxies()).into_response()
}

/// `POST /admin/api/keys/{id}/proxy` with `{"proxy": <index> | "<host:port>" | null}`.
pub async fn pin_proxy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    const USAGE: &str =
        "Expected a JSON body {\"proxy\": <index in GEMINI_PROXIES> | \"host:port\" | null (back to the hash-bound proxy)}.";
    let pin = match body {
        Ok(Json(value)) if value.get("proxy").is_some() => serde_json::from_value::<PinProxy>(value).ok(),
        _ => None,
    };
    let Some(pin) = pin else {
        return error(StatusCode::BAD_REQUEST, USAGE);
    };
    match state.admin.pin_proxy(&id, pin.proxy.as_ref()).await {
        Ok(true) => match state.admin.keys().into_iter().find(|k| k.id == id) {
            Some(view) => Json(view).into_response(),
            None => not_found(&id),
        },
        Ok(false) => not_found(&id),
        Err(PinFailure::Proxy(e)) => error(StatusCode::BAD_REQUEST, &format!("Cannot pin the key: {e}.")),
        Err(PinFailure::Store(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub async fn validate_all(State(state): State<AppState>) -> Response {
    (StatusCode::ACCEPTED, Json(state.admin.validate_all())).into_response()
}

pub async fn validation_progress(State(state): State<AppState>) -> Response {
    Json(state.admin.progress()).into_response()
}

/// `GET /admin/api/logs`: a page of the request log, newest first.
pub async fn logs(State(state): State<AppState>, query: Result<Query<LogQuery>, QueryRejection>) -> Response {
    let Ok(Query(mut query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad log query: from, to (Unix seconds), status and limit are numbers; key, model, route, error_class and before are text.",
        );
    };
    // A key may be named by its id; the log knows it by its masked form.
    if let Some(key) = &query.key {
        if let Some(view) = state.admin.keys().into_iter().find(|k| &k.id == key) {
            query.key = Some(view.masked);
        }
    }
    match state.admin.store().log_page(query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Could not read the request log: {e}"),
        ),
    }
}

/// `GET /admin/api/logs/{id}`: one request with its message and attempts.
pub async fn log_detail(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(row) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, &format!("No log row with id {id:?}."));
    };
    match state.admin.store().log_detail(row).await {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("No log row with id {id:?}.")),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Could not read the request log: {e}"),
        ),
    }
}

/// `GET /admin/api/keys/{id}/stats`: the key's requests and errors by class over the last 24 h.
pub async fn key_stats(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(view) = state.admin.keys().into_iter().find(|k| k.id == id) else {
        return not_found(&id);
    };
    match state.admin.store().key_stats(view.masked).await {
        Ok(mut stats) => {
            stats.id = id;
            Json(stats).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Could not read the request log: {e}"),
        ),
    }
}

pub async fn not_found_route() -> Response {
    error(StatusCode::NOT_FOUND, "Unknown admin route.")
}

/// `GET /metrics` in Prometheus's text format. Needs the admin token when one is configured.
pub async fn metrics(State(state): State<AppState>, req: Request) -> Response {
    if let Some(expected) = &state.settings.admin_token {
        if !bearer_from(req.headers()).is_some_and(|t| expected.matches(t)) {
            return error(
                StatusCode::UNAUTHORIZED,
                "Send the admin token as a bearer token to read metrics.",
            );
        }
    }
    let body = state.admin_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}
