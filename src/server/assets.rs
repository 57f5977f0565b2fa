//! Static site assets (WASM, JS, CSS, public files). Release builds embed `target/site` in the
//! binary, so the binary alone serves the whole app; debug builds read the folder from disk.
//! Paths that are not assets render the app's 404 page.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use leptos::prelude::LeptosOptions;

use crate::app::shell;

#[derive(rust_embed::Embed)]
#[folder = "target/site"]
#[allow_missing = true]
struct Site;

/// Whether the compiled front end is available (embedded or on disk).
pub fn site_present() -> bool {
    Site::get("pkg/gemini-balance.wasm").is_some()
}

pub async fn serve(State(options): State<LeptosOptions>, req: Request<Body>) -> Response {
    let path = req.uri().path().trim_start_matches('/').to_string();
    if let Some(file) = (!path.is_empty()).then(|| Site::get(&path)).flatten() {
        let etag = format!(
            "\"{}\"",
            file.metadata
                .sha256_hash()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let fresh = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str());
        let mime = mime_guess::from_path(&path).first_or_octet_stream();
        let mut resp = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, mime.as_ref())], file.data.into_owned()).into_response()
        };
        if let Ok(v) = HeaderValue::from_str(&etag) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        // File names are not content-hashed: let browsers keep them but revalidate.
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return resp;
    }
    let render = leptos_axum::render_app_to_stream_with_context(|| {}, move || shell(options.clone()));
    render(req).await.into_response()
}
