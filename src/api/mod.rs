//! The optional Gthulhu API client: its configuration, keys, TLS settings
//! and wire format so far.

pub mod config;

mod auth;
mod tls;
mod urls;
mod wire;
