//! Integration tests: the real server on a free port against the mock Gemini upstream, driven
//! with a real HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod anthropic;
mod edge;
mod errors_auth;
mod files;
mod gemini_native;
mod helpers;
mod images_speech;
mod logs;
mod media;
mod openai_chat;
mod pool_failover;
mod proxies;
mod reliability;
mod replicas;
mod responses;
mod streaming;
