//! Keyframe's event log: everything between an aggregate's command and the events reaching
//! their readers.
//!
//! - [`commands`] runs a command against the event store (Postgres or SQLite), with metadata and bounded
//!   retries on optimistic-concurrency conflicts, and answers the write's log position.
//! - [`append`] writes commands' events with group commit, many commands to a statement.
//! - [`reader`] reads the global log in commit-safe order (below the oldest append still running).
//! - [`relay`] publishes the log to JetStream, one leader at a time, exactly once per event;
//!   [`wake`] is how appends wake it.
//! - [`feed`] is where the read models' events come from (a JetStream durable consumer).
//! - [`projector`] applies a feed to every read model, idempotently, and rebuilds them.
//! - [`status`] tells how far the relay and each read model are behind.
//! - [`export`] writes the log as NDJSON for auditors; [`import`] writes such an export into an
//!   empty store, to move a deployment to another database.
//! - [`consumers`] keeps where each durable reader of the log inside a process stands.
//! - [`turns`] lets work on one aggregate take turns within a process.

pub mod append;
pub mod commands;
pub mod consumers;
pub mod export;
pub mod feed;
pub mod import;
pub mod metadata;
pub mod projector;
pub mod reader;
pub mod relay;
pub mod status;
pub mod store;
pub mod streams;
pub mod turns;
pub mod wake;
