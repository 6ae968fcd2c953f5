//! The `hookline` binary's library: configuration, backends, the process
//! roles, the demo and logging setup. `main.rs` only parses the command line.

pub mod backends;
pub mod config;
pub mod demo;
pub mod directories;
pub mod distributed;
pub mod gateway;
pub mod metrics;
pub mod reload;
pub mod secrets;
pub mod server;
pub mod telemetry;
