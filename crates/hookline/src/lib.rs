//! The `hookline` binary's library: configuration, the all-in-one server,
//! the demo and logging setup. `main.rs` only parses the command line.

pub mod config;
pub mod demo;
pub mod server;
pub mod telemetry;
