//! The `fnhost` command's library: configuration files, the HTTP gateway
//! and guest scaffolding. The only crate of fnhost that knows HTTP.

#![deny(missing_docs)]

pub mod client_context;
pub mod cluster;
pub mod config;
pub mod http;
mod ids;
pub mod scaffold;
