//! Video jobs: the workers and the service side of their protocol.
//!
//! Queued jobs reach workers through one durable JetStream pull consumer (`worker`) on the
//! events stream, filtered to `JobQueued`: every worker instance pulls from it, so work is
//! spread and each queue entry is held by one worker at a time. A worker then talks to the
//! service by request and reply on `<prefix>.worker.jobs.<job_id>.<kind>` ([`protocol`]): it
//! asks to start, reports progress (the reply says whether to go on: this is how a
//! cancellation reaches a running ffmpeg) and reports the outcome. The service side
//! ([`coordinator`]) turns each request into a `Job` command, so the worker never writes the
//! event store. The worker acknowledges the queue message only once its outcome is recorded;
//! if it dies first, JetStream delivers the entry again after the ack wait.
//!
//! A process without NATS runs its workers itself, over the same protocol in memory
//! ([`local`]); the worker sees both through [`transport`].

pub mod coordinator;
pub mod local;
pub mod protocol;
pub mod runner;
pub mod transport;
