//! Server entry point: settings → telemetry → application → serve.

use std::process::ExitCode;

use gemini_balance::gateway::config::Settings;
use gemini_balance::server::Application;

#[cfg(not(target_env = "msvc"))]
mod allocator;

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
