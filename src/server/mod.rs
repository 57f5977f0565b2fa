//! The HTTP server: builds the router (API routes + Leptos pages), binds the listener, runs it.
//! Only wiring lives here; handlers are in `routes/`, the work in `crate::gateway`.

pub mod assets;
pub mod auth;
pub mod error;
pub mod observe;
pub mod routes;
pub mod sse;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use crate::app::{shell, App};
use crate::gateway::admin::{self, Admin};
use crate::gateway::clock::SystemClock;
use crate::gateway::config::Settings;
use crate::gateway::media::MediaFetcher;
use crate::gateway::metrics::Metrics;
use crate::gateway::owners::Resources;
use crate::gateway::pool::KeyPool;
use crate::gateway::redis_sync::SharedPool;
use crate::gateway::response_store::ResponseStore;
use crate::gateway::service::Gateway;
use crate::gateway::store::Store;
use crate::gateway::upstream::Upstream;

/// Shared state of every handler: one reference count to bump however often axum clones it
/// (each middleware layer and the handler take their own copy of every request).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppStateInner {
    pub settings: Arc<Settings>,
    pub gateway: Gateway,
    pub admin: Admin,
    pub metrics: Arc<Metrics>,
    /// Set when replicas share the pool through Redis.
    pub shared: Option<Arc<SharedPool>>,
}

impl AppState {
    /// The Prometheus text of all metrics.
    pub fn admin_metrics(&self) -> String {
        let mut out = self.metrics.render(self.gateway.upstream().pool());
        if let Some(shared) = &self.shared {
            out.push_str(
                "# HELP gb_redis_up Whether this replica reaches the shared Redis.\n# TYPE gb_redis_up gauge\n",
            );
            out.push_str(&format!("gb_redis_up {}\n", u8::from(shared.is_up())));
        }
        let proxies = self.gateway.upstream().proxies().status(std::time::Instant::now());
        if !proxies.is_empty() {
            out.push_str("# HELP gb_proxy_attempts_total Upstream attempts through each egress proxy: failed to get through, or answered.\n# TYPE gb_proxy_attempts_total counter\n");
            for p in &proxies {
                out.push_str(&format!(
                    "gb_proxy_attempts_total{{proxy=\"{}\",result=\"proxy_error\"}} {}\ngb_proxy_attempts_total{{proxy=\"{}\",result=\"ok\"}} {}\n",
                    p.label, p.failures, p.label, p.successes
                ));
            }
            out.push_str("# HELP gb_proxy_cooling Whether an egress proxy is cooling down after failures.\n# TYPE gb_proxy_cooling gauge\n");
            for p in &proxies {
                out.push_str(&format!(
                    "gb_proxy_cooling{{proxy=\"{}\"}} {}\n",
                    p.label,
                    u8::from(p.cooling_in.is_some())
                ));
            }
        }
        out
    }
}

/// The admin JSON API, mounted at `/admin/api`.
fn admin_api(state: &AppState) -> Router<AppState> {
    use routes::admin;
    Router::new()
        .route("/keys", get(admin::keys).post(admin::add_keys))
        .route("/keys/{id}", axum::routing::delete(admin::remove_key))
        .route("/keys/{id}/stats", get(admin::key_stats))
        .route("/keys/{id}/proxy", post(admin::pin_proxy))
        .route("/keys/{id}/{action}", post(admin::key_action))
        .route("/logs", get(admin::logs))
        .route("/logs/{id}", get(admin::log_detail))
        .route("/proxies", get(admin::proxies))
        .route("/summary", get(admin::summary))
        .route("/validate", get(admin::validation_progress).post(admin::validate_all))
        .fallback(admin::not_found_route)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ))
}

/// A random request id for `x-request-id`, unless the client sent one.
#[derive(Clone, Default)]
struct MakeId;

impl tower_http::request_id::MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        let id = crate::gateway::translate::new_id("req_");
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The router for the OpenAI-compatible API, mounted at `/v1` and `/api/v1`.
fn openai_api(state: &AppState) -> Router<AppState> {
    use routes::openai;
    // The dialects' own routes check their caller with an extractor (`auth::OpenAiCaller`,
    // `auth::AnthropicCaller`) before reading the body.
    Router::new()
        .route("/chat/completions", post(openai::chat_completions))
        .route("/messages", post(routes::anthropic::messages))
        .route("/messages/count_tokens", post(routes::anthropic::count_tokens))
        .route("/responses", post(routes::responses::create))
        .route("/images/generations", post(openai::images_generations))
        .route("/images/edits", post(openai::images_edits))
        .route("/audio/speech", post(openai::audio_speech))
        .route("/files", post(routes::files::openai_upload))
        // Shared with Google's v1 API like the model routes below.
        .route("/files", get(routes::files::v1_files))
        .route(
            "/files/{id}",
            get(routes::files::v1_file).delete(routes::files::v1_file),
        )
        .route(
            "/cachedContents",
            get(routes::files::list_caches).post(routes::files::create_cache),
        )
        .route(
            "/cachedContents/{id}",
            get(routes::files::cache)
                .patch(routes::files::cache)
                .delete(routes::files::cache),
        )
        .route("/embeddings", post(openai::embeddings))
        // Shared with Google's v1 API: these answer in the caller's dialect and check its
        // credentials themselves; POST `{model}:{action}` is Google's.
        .route("/models", get(openai::list_models))
        .route(
            "/models/{name}",
            get(openai::get_model).post(routes::gemini::model_action),
        )
        .route_layer(observe::ObserveLayer::new(state.clone()))
        .fallback(openai::not_found)
        .method_not_allowed_fallback(openai::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
}

/// The Gemini-native API (`models`, `models/{model}`, `models/{model}:{action}`), mounted at
/// `/v1beta`, `/gemini/v1beta` and `/gemini/v1`.
fn gemini_api(state: &AppState) -> Router<AppState> {
    use routes::{files, gemini};
    Router::new()
        .route("/models", get(gemini::list_models))
        .route("/models/{name}", get(gemini::get_model).post(gemini::model_action))
        .route("/files", get(files::list_files))
        .route("/files/{id}", get(files::file).delete(files::file))
        .route("/cachedContents", get(files::list_caches).post(files::create_cache))
        .route(
            "/cachedContents/{id}",
            get(files::cache).patch(files::cache).delete(files::cache),
        )
        .route_layer(observe::ObserveLayer::new(state.clone()))
        .fallback(gemini::not_found)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
}

/// The Files API's resumable uploads, at Google's path (SDKs keep it whatever base URL they
/// were given) and under `/gemini`.
fn upload_api(state: &AppState) -> Router<AppState> {
    use routes::files;
    Router::new()
        .route("/upload/{version}/files", post(files::upload))
        .route("/gemini/upload/{version}/files", post(files::upload))
        .route_layer(observe::ObserveLayer::new(state.clone()))
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
        // The UI's server functions carry the token in their (tiny) form body: cap what can be
        // read before it is checked.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(16 * 1024))
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
        .merge(upload_api(&state))
        .nest("/admin/api", admin_api(&state))
        .route("/healthz", get(routes::health::healthz))
        .route("/metrics", get(routes::admin::metrics))
        .with_state(state.clone())
        .merge(site)
        .layer(auth::OpenModeLayer::new(state))
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(MakeId))
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
    admin: Admin,
    limits: ConnectionLimits,
}

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    max_connections: usize,
    header_read_timeout: std::time::Duration,
    shutdown_grace: std::time::Duration,
    threads: usize,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listener = bind(settings.site_addr).map_err(|source| StartupError::Bind {
            addr: settings.site_addr,
            source,
        })?;
        let (store, snapshot) = Store::open(&settings.data_dir, settings.log_retention, settings.log_max_rows)
            .map_err(StartupError::Client)?;
        let (keys, manual) = admin::startup_keys(&settings.api_keys, &snapshot);
        let pool = Arc::new(KeyPool::new(keys, settings.pool.clone(), Arc::new(SystemClock)));
        for fingerprint in manual {
            pool.set_manual(&fingerprint, true);
        }
        for c in &snapshot.counters {
            pool.restore_counters(&c.fingerprint, c.requests, c.failures, c.tokens);
        }
        // Other replicas' decisions are picked up before this one serves.
        let shared = match settings.redis.clone() {
            Some(redis) => Some(
                crate::gateway::redis_sync::start(redis, pool.clone())
                    .await
                    .map_err(StartupError::Client)?,
            ),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let upstream = Arc::new(
            Upstream::new(
                &settings.base_url,
                pool.clone(),
                settings.upstream.clone(),
                settings.max_retries,
                metrics.clone(),
            )
            .map_err(StartupError::Client)?
            .with_probe_model(&settings.probe_model)
            .with_resources(Arc::new(Resources::new(Some(store.clone()), snapshot.resources)))
            .with_proxies(&settings.proxies)
            .map_err(StartupError::Client)?,
        );
        if !settings.proxies.is_empty() {
            admin::restore_pins(&pool, upstream.proxies(), &snapshot.pins);
            let hosts: Vec<&str> = settings.proxies.iter().map(|p| p.label()).collect();
            tracing::info!(proxies = %hosts.join(", "), "keys leave through egress proxies");
        }
        if !assets::site_present() {
            tracing::warn!("the web UI was not built into this binary (run `cargo leptos build --release`); the API works without it");
        }
        let admin = Admin::new(pool, upstream.clone(), store, &settings.api_keys);
        let saver = admin.clone();
        let background = vec![
            tokio::spawn(upstream.clone().run_revalidation()),
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    saver.save_counters();
                }
            }),
        ];
        let media = MediaFetcher::new(settings.media.clone()).map_err(StartupError::Client)?;
        let limits = ConnectionLimits {
            max_connections: settings.max_connections,
            header_read_timeout: settings.header_read_timeout,
            shutdown_grace: settings.shutdown_grace,
            threads: settings.server_threads,
        };
        let aliases = settings.model_aliases.clone();
        let suffixes = settings.model_suffixes;
        let responses = ResponseStore::new(settings.responses_per_token, settings.responses_max_bytes);
        let state = AppState(Arc::new(AppStateInner {
            settings: Arc::new(settings),
            gateway: Gateway::new(upstream, media)
                .with_aliases(aliases)
                .with_suffixes(suffixes)
                .with_response_store(responses),
            admin: admin.clone(),
            metrics,
            shared,
        }));
        Ok(Self {
            listener,
            router: router(state),
            background,
            admin,
            limits,
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
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests and
    /// streams finish for up to `SHUTDOWN_GRACE_SECS`, and flushes counters and the request log.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            router,
            background,
            admin,
            limits,
        } = self;
        serve(listener, router, limits, shutdown).await;
        for task in background {
            task.abort();
        }
        admin.save_counters();
        admin.store().flush().await;
        Ok(())
    }
}

/// The accept loop: hands each connection to the least busy serving thread, at most
/// `max_connections` at once (beyond that, new connections wait in the listen backlog); a
/// deadline for request headers, and a graceful shutdown bounded by the grace period.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let protocols = Protocols::new(limits.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (stopping, stop_signal) = tokio::sync::watch::channel(false);
    let mut lanes = Vec::with_capacity(limits.threads);
    for i in 0..limits.threads {
        match Lane::start(i, protocols.clone(), router.clone(), stop_signal.clone()) {
            Ok(lane) => lanes.push(lane),
            Err(e) => tracing::warn!(error = %e, "cannot start serving thread {i}"),
        }
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut warned_full = false;
    tokio::pin!(shutdown);
    loop {
        let permit = if let Ok(p) = permits.clone().try_acquire_owned() {
            p
        } else {
            if !warned_full {
                tracing::warn!(
                    limit = limits.max_connections,
                    "connection limit reached (MAX_CONNECTIONS); new connections wait"
                );
                warned_full = true;
            }
            tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = &mut shutdown => break,
            }
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or similar: wait a moment instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Out of this runtime's reactor: the serving thread registers it with its own.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        let handed = Handed {
            stream,
            permit,
            watcher: graceful.watcher(),
        };
        match lanes.iter().min_by_key(|l| l.open.load(Ordering::Relaxed)) {
            Some(lane) => lane.hand(handed),
            // No serving thread could start: serve on this runtime.
            None => {
                let (protocols, router, stop) = (protocols.clone(), router.clone(), stop_signal.clone());
                tokio::spawn(async move { protocols.serve(handed, router, stop).await });
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let open = limits.max_connections - permits.available_permits();
    tracing::info!(
        open,
        grace_secs = limits.shutdown_grace.as_secs(),
        "stopped accepting; letting requests finish"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections finished"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            let open = limits.max_connections - permits.available_permits();
            tracing::warn!(open, "shutdown grace period over; closing the remaining connections");
        }
    }
    // Dropping the lanes ends their threads, and with them any connection still open.
}

/// An accepted connection, its place under `MAX_CONNECTIONS`, and its graceful-shutdown watch.
struct Handed {
    stream: std::net::TcpStream,
    permit: tokio::sync::OwnedSemaphorePermit,
    watcher: hyper_util::server::graceful::Watcher,
}

/// HTTP/1.1 and cleartext HTTP/2 (prior knowledge), told apart by a connection's first bytes.
///
/// Peeking leaves the bytes in the socket, so hyper's HTTP/1 connection reads its request into
/// a buffer of its usual size and its task holds only the HTTP/1 state (hyper-util's automatic
/// connection reads them apart first, which doubles that buffer, and carries both protocols'
/// state for every connection).
#[derive(Clone)]
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>,
    header_read_timeout: std::time::Duration,
}

/// What an HTTP/2 client sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Protocols {
    fn new(header_read_timeout: std::time::Duration) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioTimer};
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        Self {
            http1,
            http2,
            header_read_timeout,
        }
    }

    /// Serves one connection to its end (or until shutdown closes it gracefully); its permit
    /// goes back when it is over.
    async fn serve(&self, handed: Handed, router: Router, mut stop: tokio::sync::watch::Receiver<bool>) {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;
        let Handed {
            stream,
            permit: _permit,
            watcher,
        } = handed;
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take over a connection");
                return;
            }
        };
        // A connection that has sent nothing yet is closed at shutdown, or after the header
        // deadline.
        let http2 = tokio::select! {
            sniffed = tokio::time::timeout(self.header_read_timeout, sniff(&stream)) => match sniffed {
                Ok(Some(http2)) => http2,
                _ => return,
            },
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        let service = TowerToHyperService::new(router);
        let io = TokioIo::new(stream);
        let _ = if http2 {
            watcher.watch(self.http2.serve_connection(io, service)).await
        } else {
            watcher.watch(self.http1.serve_connection(io, service)).await
        };
    }
}

/// Waits for a connection's first bytes, leaving them unread: `Some(true)` for HTTP/2's
/// preface, `Some(false)` for anything else, `None` if the peer closed or failed first.
async fn sniff(stream: &tokio::net::TcpStream) -> Option<bool> {
    let mut head = [0u8; 24];
    loop {
        let n = stream.peek(&mut head).await.ok()?;
        if n == 0 {
            return None;
        }
        if !HTTP2_PREFACE.starts_with(&head[..n]) {
            return Some(false);
        }
        // "PRI" starts no HTTP/1.1 request; "P" or "PR" could still be POST, PUT or PATCH.
        if n >= 3 {
            return Some(true);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// A serving thread: a single-threaded runtime that runs its connections to the end. Everything
/// a request does, its upstream connection included ([`crate::gateway::http1`]),
/// stays on that thread: no task is stolen by, or woken from, another thread mid-request.
struct Lane {
    sender: tokio::sync::mpsc::UnboundedSender<Handed>,
    /// Connections open on this thread.
    open: Arc<AtomicUsize>,
}

impl Lane {
    fn start(
        index: usize,
        protocols: Protocols,
        router: Router,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Handed>();
        let open = Arc::new(AtomicUsize::new(0));
        let count = open.clone();
        std::thread::Builder::new()
            .name(format!("serve-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let protocols = Arc::new(protocols);
                    while let Some(handed) = receiver.recv().await {
                        let (protocols, router, stop, count) =
                            (protocols.clone(), router.clone(), stop.clone(), count.clone());
                        tokio::spawn(async move {
                            protocols.serve(handed, router, stop).await;
                            count.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                });
                // The accept loop is over and the grace period spent.
                runtime.shutdown_background();
            })?;
        Ok(Self { sender, open })
    }

    /// Moves a connection onto this thread's runtime.
    fn hand(&self, handed: Handed) {
        self.open.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(handed).is_err() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Raises this process's open-file limit to its hard limit: every open stream holds two
/// descriptors (client and upstream). Says so when the hard limit is low.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        let streams = lim.rlim_cur / 2;
        if lim.rlim_cur < 16_384 {
            tracing::warn!(open_files = lim.rlim_cur, max_streams = streams,
                "the open-file limit is low: each open stream needs two descriptors; raise it (systemd: LimitNOFILE=65536)");
        } else {
            tracing::info!(open_files = lim.rlim_cur, "open-file limit");
        }
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
