//! Runs the mock Gemini API (see `gemini_balance::mock`): `mock-gemini [ADDR]`, default
//! 127.0.0.1:8090. `MOCK_CHUNK_DELAY_MS` sets the delay between stream events (default 40);
//! `MOCK_FIRST_EVENT_MS` the delay before a stream's first event, or before a whole answer's
//! headers (thinking time, default 0).

use std::net::SocketAddr;
use std::time::Duration;

use gemini_balance::mock::MockGemini;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-gemini: bad address: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let env_ms = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default)
    };
    let mock = MockGemini::new();
    mock.set_chunk_delay(Duration::from_millis(env_ms("MOCK_CHUNK_DELAY_MS", 40)));
    mock.set_first_event_delay(Duration::from_millis(env_ms("MOCK_FIRST_EVENT_MS", 0)));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-gemini: cannot listen on {addr}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    // Events are small separate writes: without TCP_NODELAY, Nagle holds each one back until
    // the previous is acknowledged (up to the client's 40 ms delayed ACK).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("mock Gemini API listening on http://{addr}");
    if let Err(e) = axum::serve(listener, mock.router()).await {
        eprintln!("mock-gemini: {e}");
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}
