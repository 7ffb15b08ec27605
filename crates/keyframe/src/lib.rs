//! The `keyframe` binary's library: configuration, wiring the parts into one process, and the
//! subcommands. `main.rs` only parses arguments and calls in here; tests and the benchmark use
//! [`app::Application`] directly.

pub mod app;
pub mod cli;
pub mod config;
pub mod database;
pub mod dev_secrets;
pub mod pipeline;
pub mod telemetry;
pub mod tools;
