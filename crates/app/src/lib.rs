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

pub mod accounts;
pub mod administration;
pub mod api_keys;
pub mod buses;
pub mod credits;
pub mod error;
pub mod first_admin;
pub mod jobs;
pub mod library;
pub mod lockout;
pub mod mail;
pub mod memberships;
pub mod opaque_tokens;
pub mod organizations;
pub mod passwords;
pub mod policy;
pub mod projects;
pub mod secrets;
pub mod session_guard;
pub mod sessions;
pub mod subscriptions;
mod ttl_cache;
pub mod two_factor;

use buses::Buses;
use keyframe_database::Database;
use keyframe_domain::pricing::Pricing;
use keyframe_domain::user::LockoutPolicy;
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use keyframe_media::storage::Storage;
use lockout::LoginGate;
use mail::Mailer;
use memberships::MembershipGuard;
use passwords::Passwords;
use secrets::MasterKey;
use session_guard::SessionGuard;
use std::sync::Arc;
use std::time::Duration;

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
    /// Storage each organisation's videos may take, in bytes.
    pub organization_storage_quota_bytes: u64,
    /// Credits every new account is granted.
    pub signup_bonus_credits: i64,
    /// Accounts and sessions.
    pub identity: IdentitySettings,
}

/// How accounts and sessions behave (from configuration).
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Lifetime of a refresh token (renewed by each rotation).
    pub refresh_token_ttl: Duration,
    /// How long a mailed verification token works.
    pub email_verification_ttl: Duration,
    /// How long a mailed password-reset token works.
    pub password_reset_ttl: Duration,
    /// How long a mailed invitation to an organisation works.
    pub invitation_ttl: Duration,
    /// Whether login waits until the e-mail address is verified.
    pub require_email_verification: bool,
    /// When failed logins lock an account.
    pub lockout: LockoutPolicy,
    /// How long ending every session of a user waits for the sessions list to include the
    /// newest (see [`sessions`]).
    pub sessions_list_wait: Duration,
}

/// What the use cases work with: the event store's buses, the read models' pool, the storage
/// of videos and artifacts, the identity services, and the settings. Each use case is a
/// method, in the module of its subject (`jobs`, `projects`, `library`, `credits`, `accounts`,
/// `sessions`, ...).
pub struct App {
    /// The database: event store and read models.
    pub database: Database,
    /// The command buses.
    pub buses: Buses,
    /// Where uploads and artifacts are stored.
    pub storage: Storage,
    /// Password hashing, bounded in concurrency.
    pub passwords: Passwords,
    /// Guesses at credentials, admitted and judged under the lockout.
    pub logins: LoginGate,
    /// Whether a session still stands.
    pub session_guard: SessionGuard,
    /// Who is a member of which organisation, with which role.
    pub memberships: MembershipGuard,
    /// Outgoing mail.
    pub mailer: Arc<Mailer>,
    /// Seals and opens the secrets users keep with Keyframe (API keys, TOTP secrets).
    pub master_key: MasterKey,
    /// Plans, and Stripe when configured.
    pub billing: subscriptions::Billing,
    /// The business settings.
    pub settings: Settings,
}

/// `origin` with `actor` as the one who acts.
pub(crate) fn acting(origin: &CommandMetadata, actor: Actor) -> CommandMetadata {
    CommandMetadata {
        actor,
        ..origin.clone()
    }
}
