//! `GET /healthz`: liveness plus a count of usable keys (never the keys).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::server::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let (total, available) = state.gateway.upstream().pool().availability();
    Json(json!({
        "status": if available > 0 { "ok" } else { "degraded" },
        "keys": { "total": total, "available": available },
    }))
}
