//! Route handlers, one file per route family. Handlers stay thin: parse, call the gateway, render.

pub mod admin;
pub mod anthropic;
pub mod files;
pub mod gemini;
pub mod health;
pub mod openai;
pub mod responses;

pub use crate::server::sse::response as sse_response;
