//! Test support for Keyframe's end-to-end tests: a fresh database and NATS prefix per test,
//! the real application on port 0, and a small HTTP client that speaks the API.
//!
//! Everything a test creates is removed when its handle drops (databases with `FORCE`, streams
//! by name), and leftovers of crashed runs older than two hours are swept on the next run, so
//! the shared Postgres and NATS servers do not fill up.

pub mod contract;
pub mod smtp;
pub mod stripe;

mod app;
mod client;
mod db;
mod media;
mod nats;
mod orgs;
mod pipeline;
mod sse;
mod worker;

pub use app::{
    Sibling, SiblingBuilder, TestApp, TestAppBuilder, TestUser, test_api_settings, test_coordinator_settings,
};
pub use client::http_client;
pub use db::{
    EmbeddedDatabase, TestDatabase, TestStore, admin_database_url, all_events, open_append,
    transactions_that_cannot_append,
};
pub use media::{make_avi, make_video, short_video};
pub use nats::{NatsServerProcess, TestNats, assert_exactly_once_in_order, nats_url};
pub use pipeline::{Running, start_project_list_projector, start_projector, start_relay, start_relay_woken_by};
pub use sse::{collect_events, open_job_events};
pub use worker::TestWorker;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which deployment the end-to-end tests run against: `KEYFRAME_TEST_BACKEND=embedded` runs
/// them on the embedded one (SQLite, no NATS: nothing installed); anything else, or nothing, on
/// Postgres and NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// Postgres and NATS.
    Postgres,
    /// The embedded deployment.
    Embedded,
}

/// The suite this run is.
pub fn suite() -> Suite {
    match std::env::var("KEYFRAME_TEST_BACKEND").as_deref() {
        Ok("embedded") => Suite::Embedded,
        _ => Suite::Postgres,
    }
}

/// Whether this test is left out of this run: in the embedded suite, a test of what only
/// Postgres and NATS have (the relay, the commit fence, JetStream, a second API process, a
/// database cut off under the service) says so and returns; the Postgres and NATS suite runs it.
pub fn skipped_in_the_embedded_suite() -> bool {
    let skipped = suite() == Suite::Embedded;
    if skipped {
        let test = std::thread::current().name().unwrap_or("this test").to_owned();
        eprintln!("{test}: needs Postgres and NATS; it runs in the Postgres and NATS suite");
    }
    skipped
}

/// How long an abandoned test database or stream lives before a later run removes it.
pub(crate) const STALE_AFTER_SECS: u64 = 2 * 3600;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A unique name: creation time (for stale sweeping) and randomness (for parallel runs).
pub(crate) fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        unix_now(),
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Runs async clean-up from `Drop`, which may itself run inside or outside a runtime.
pub(crate) fn block_on_cleanup<F: Future<Output = ()> + Send + 'static>(cleanup: F) {
    let _ = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            runtime.block_on(cleanup);
        }
    })
    .join();
}

pub(crate) fn is_stale(stamped: &str) -> bool {
    stamped
        .split('x')
        .next()
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|created| created + STALE_AFTER_SECS < unix_now())
}

/// Waits until `condition` holds, checking every few milliseconds, and fails the test after
/// `deadline`. Never a fixed sleep.
pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
