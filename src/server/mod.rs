//! The HTTP server: builds the router (API routes + Leptos pages), binds the listener, runs it.
//! Only wiring lives here; handlers are in `routes/`, the work in `crate::gateway`.

pub mod assets;
pub mod auth;
pub mod error;
pub mod routes;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use crate::app::{shell, App};
use crate::gateway::clock::SystemClock;
use crate::gateway::config::Settings;
use crate::gateway::media::MediaFetcher;
use crate::gateway::pool::KeyPool;
use crate::gateway::service::Gateway;
use crate::gateway::upstream::Upstream;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub gateway: Gateway,
}

/// The router for the OpenAI-compatible API, mounted at `/v1` and `/api/v1`.
fn openai_api(state: &AppState) -> Router<AppState> {
    use routes::openai;
    let auth = axum::middleware::from_fn_with_state(state.clone(), auth::require_bearer);
    Router::new()
        .route("/chat/completions", post(openai::chat_completions).layer(auth.clone()))
        .route("/embeddings", post(openai::embeddings).layer(auth))
        // Shared with Google's v1 API: these answer in the caller's dialect and check its
        // credentials themselves; POST `{model}:{action}` is Google's.
        .route("/models", get(openai::list_models))
        .route(
            "/models/{name}",
            get(openai::get_model).post(routes::gemini::model_action),
        )
        .fallback(openai::not_found)
        .method_not_allowed_fallback(openai::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
}

/// The Gemini-native API (`models`, `models/{model}`, `models/{model}:{action}`), mounted at
/// `/v1beta`, `/gemini/v1beta` and `/gemini/v1`.
fn gemini_api(state: &AppState) -> Router<AppState> {
    use routes::gemini;
    Router::new()
        .route("/models", get(gemini::list_models))
        .route("/models/{name}", get(gemini::get_model).post(gemini::model_action))
        .fallback(gemini::not_found)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
}

pub fn router(state: AppState) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name("gemini-balance")
        .site_root(state.settings.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(state.settings.site_addr)
        .build();
    let pages = generate_route_list(App);
    let site = Router::new()
        .leptos_routes_with_context(
            &leptos_options,
            pages,
            {
                let state = state.clone();
                move || provide_context(state.clone())
            },
            {
                let options = leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(assets::serve)
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(leptos_options);
    let api = openai_api(&state);
    let native = gemini_api(&state);
    Router::new()
        .nest("/v1", api.clone())
        .nest("/api/v1", api)
        .nest("/v1beta", native.clone())
        .nest("/gemini/v1beta", native.clone())
        .nest("/gemini/v1", native)
        .route("/healthz", get(routes::health::healthz))
        .with_state(state)
        .merge(site)
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Client(String),
}

/// The built server, bound to its port but not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listener = bind(settings.site_addr).map_err(|source| StartupError::Bind {
            addr: settings.site_addr,
            source,
        })?;
        let pool = Arc::new(KeyPool::new(
            settings.api_keys.clone(),
            settings.pool.clone(),
            Arc::new(SystemClock),
        ));
        let upstream = Arc::new(
            Upstream::new(
                &settings.base_url,
                pool,
                settings.upstream.clone(),
                settings.max_retries,
            )
            .map_err(StartupError::Client)?,
        );
        if !assets::site_present() {
            tracing::warn!("the web UI was not built into this binary (run `cargo leptos build --release`); the API works without it");
        }
        let background = vec![tokio::spawn(upstream.clone().run_revalidation())];
        let media = MediaFetcher::new(settings.media.clone()).map_err(StartupError::Client)?;
        let state = AppState {
            settings: Arc::new(settings),
            gateway: Gateway::new(upstream, media),
        };
        Ok(Self {
            listener,
            router: router(state),
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until ctrl-c or SIGTERM, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            listener,
            router,
            background,
        } = self;
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await;
        for task in background {
            task.abort();
        }
        result
    }
}

/// A listener with a deep accept backlog: bursts of new connections must not hit SYN retries.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
