//! Server entry point: settings → telemetry → application → serve.

use std::process::ExitCode;

use gemini_balance::gateway::config::Settings;
use gemini_balance::server::Application;

/// jemalloc serves the gateway's many small, short-lived allocations (per request and per stream
/// event) with less CPU than glibc's malloc. Two arenas and quick return of freed pages keep its
/// resident memory at glibc's level; `_RJEM_MALLOC_CONF` can still override these at run time.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options (its `malloc_conf` C string).
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable, NUL-terminated string.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for MallocConf {}

#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf = MallocConf(c"narenas:2,dirty_decay_ms:2000,muzzy_decay_ms:0".as_ptr());

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load_from(std::path::Path::new(".")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gemini-balance: {e}");
            return ExitCode::from(2);
        }
    };
    gemini_balance::server::telemetry::init(settings.log_json);
    gemini_balance::server::raise_fd_limit();
    if settings.api_keys.is_empty() {
        tracing::warn!("GEMINI_API_KEYS is empty: every API request will fail with 503 until keys are configured");
    }
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("gemini-balance: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(addr = %app.local_addr(), "gemini-balance listening on http://{}", app.local_addr());
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gemini-balance: {e}");
            ExitCode::from(1)
        }
    }
}
