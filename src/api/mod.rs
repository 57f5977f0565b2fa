//! Types and server functions shared by the browser UI and the server. Conversations live in the
//! browser (localStorage); the server only answers configuration and model questions here. The
//! chat stream itself is the raw SSE route `/api/v1/chat/completions`.

pub mod admin;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Who wrote a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    User,
    Assistant,
}

/// One message of a conversation as the UI keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
    /// Attached images as data URLs.
    #[serde(default)]
    pub images: Vec<String>,
    /// The error that ended this reply, shown inline with a retry button.
    #[serde(default)]
    pub error: Option<String>,
    /// The user stopped this reply before it finished.
    #[serde(default)]
    pub stopped: bool,
}

impl Turn {
    pub fn user(text: String, images: Vec<String>) -> Self {
        Turn {
            speaker: Speaker::User,
            text,
            images,
            error: None,
            stopped: false,
        }
    }
    pub fn assistant(text: String) -> Self {
        Turn {
            speaker: Speaker::Assistant,
            text,
            images: Vec::new(),
            error: None,
            stopped: false,
        }
    }
}

/// A conversation kept in the browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub turns: Vec<Turn>,
    #[serde(default)]
    pub model: Option<String>,
}

/// What the UI needs to know about the server before the first request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiConfig {
    /// `ALLOWED_TOKENS` is set: the UI must ask for a token.
    pub token_required: bool,
    pub default_model: String,
}

pub const DEFAULT_MODEL: &str = "gemini-2.5-flash";

/// Whether the server wants a token, and the default model.
// Fixed endpoints: the default adds a hash of the build path, which must then match between the
// server and the WASM build; a fixed name cannot drift.
#[server(prefix = "/api/ui", endpoint = "config")]
pub async fn get_ui_config() -> Result<UiConfig, ServerFnError> {
    let state = expect_context::<crate::server::AppState>();
    Ok(UiConfig {
        token_required: !state.settings.allowed_tokens.is_empty(),
        default_model: DEFAULT_MODEL.to_string(),
    })
}

/// Chat-capable model ids, for the model picker. Checks the token like the API does.
#[server(prefix = "/api/ui", endpoint = "models")]
pub async fn list_models(token: String) -> Result<Vec<String>, ServerFnError> {
    let state = expect_context::<crate::server::AppState>();
    if !crate::server::auth::is_allowed(&state, Some(token.as_str()).filter(|t| !t.is_empty())) {
        return Err(ServerFnError::new("invalid_token"));
    }
    let list = state
        .gateway
        .models()
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let mut ids: Vec<String> = list
        .data
        .into_iter()
        .map(|m| m.id)
        .filter(|id| !id.contains("embedding"))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Whether a token is accepted by this gateway.
#[server(prefix = "/api/ui", endpoint = "check_token")]
pub async fn check_token(token: String) -> Result<bool, ServerFnError> {
    let state = expect_context::<crate::server::AppState>();
    Ok(crate::server::auth::is_allowed(
        &state,
        Some(token.as_str()).filter(|t| !t.is_empty()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leptos::server_fn::ServerFn;

    #[test]
    fn server_function_urls_do_not_depend_on_the_build() {
        assert_eq!(GetUiConfig::PATH, "/api/ui/config");
        assert_eq!(ListModels::PATH, "/api/ui/models");
        assert_eq!(CheckToken::PATH, "/api/ui/check_token");
    }
}
