//! Route handlers, one file per route family. Handlers stay thin: parse, call the gateway, render.

pub mod admin;
pub mod gemini;
pub mod health;
pub mod openai;
