//! `GET /healthz`: liveness plus a count of usable keys (never the keys).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::server::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let keys = state.gateway.upstream().pool().status();
    let available = keys
        .iter()
        .filter(|k| k.state == "active" || k.state == "half_open")
        .count();
    Json(json!({
        "status": if available > 0 { "ok" } else { "degraded" },
        "keys": { "total": keys.len(), "available": available },
    }))
}
