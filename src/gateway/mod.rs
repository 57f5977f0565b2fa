//! The gateway core: key pool, client dialects ⇄ Gemini translation and the upstream client.
//! No axum or Leptos types belong here, so all of it can be unit-tested on its own.

pub mod admin;
pub mod aliases;
pub mod clock;
pub mod config;
pub mod error;
pub mod files;
pub mod fold;
pub mod gemini;
pub mod http1;
pub mod media;
pub mod metrics;
pub mod openai;
pub mod owners;
pub mod pool;
pub mod proxy;
pub mod redis_sync;
pub mod response_store;
pub mod secret;
pub mod service;
pub mod sse;
pub mod store;
pub mod suffixes;
pub mod text_event;
pub mod translate;
pub mod transport;
pub mod upstream;
