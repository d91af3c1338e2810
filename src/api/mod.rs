//! The optional Gthulhu API client: its configuration so far.

pub mod config;

mod urls;
