//! Keyframe's application layer: the use cases every transport calls.
//!
//! A use case takes plain inputs, the [`policy::Actor`] asking and the metadata its events
//! carry; it loads what it needs, asks [`policy::authorize`], runs the commands in order (and
//! undoes what it started when a later step fails), and answers domain values or an
//! [`error::AppError`]. It knows nothing of HTTP: the API's routes extract, call one use case
//! and render; the jobs coordinator and the billing settlement share the same [`buses::Buses`].
//!
//! Dependencies flow one way: `domain` <- `projections` <- `eventlog`, `media` <- this crate <-
//! `api` <- the `keyframe` binary.

pub mod buses;
pub mod credits;
pub mod error;
pub mod jobs;
pub mod library;
pub mod policy;
pub mod projects;

use buses::Buses;
use keyframe_domain::pricing::Pricing;
use keyframe_media::storage::Storage;
use sqlx::PgPool;

/// The business settings the use cases apply (from configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// What jobs cost.
    pub pricing: Pricing,
    /// Automatic retries of a job when the request names none.
    pub default_max_retries: u32,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Storage each user's videos may take, in bytes.
    pub storage_quota_bytes: u64,
    /// Credits every new account is granted.
    pub signup_bonus_credits: i64,
}

/// What the use cases work with: the event store's buses, the read models' pool, the storage
/// of videos and artifacts, and the settings. Each use case is a method, in the module of its
/// subject (`jobs`, `projects`, `library`, `credits`).
pub struct App {
    /// The Postgres pool: event store and read models.
    pub pool: PgPool,
    /// The command buses.
    pub buses: Buses,
    /// Where uploads and artifacts are stored.
    pub storage: Storage,
    /// The business settings.
    pub settings: Settings,
}
