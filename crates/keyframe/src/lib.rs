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

/// The durable JetStream consumers the service keeps on the events stream. The shipped
/// `nats.conf` denies the analytics user each of them, and its test checks that for every name
/// here: a consumer added to the service belongs in this list and in that file.
pub const SERVICE_CONSUMERS: [&str; 5] = [
    keyframe_eventlog::streams::PROJECTIONS_CONSUMER,
    keyframe_worker::protocol::WORKER_CONSUMER,
    keyframe_billing::settlement::SETTLEMENT_CONSUMER,
    keyframe_billing::settlement::RESERVATION_CONSUMER,
    keyframe_billing::settlement::SIGNUP_CONSUMER,
];
