//! The API's settings, filled from configuration by the `keyframe` binary.

use keyframe_app::mail::MailSettings;
use keyframe_app::passwords::Argon2Settings;
use keyframe_app::secrets::MasterKeySetting;
use keyframe_app::subscriptions::BillingSettings;
use keyframe_domain::user::LockoutPolicy;
use std::path::PathBuf;
use std::time::Duration;

/// An access-token key that no longer signs but still verifies what it signed.
#[derive(Clone)]
pub struct JwtKey {
    /// Its `kid`.
    pub id: String,
    /// The HMAC secret.
    pub secret: String,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Everything the API needs to know that is not a connection.
#[derive(Clone)]
pub struct ApiSettings {
    /// HMAC key for access tokens (HS256).
    pub jwt_secret: String,
    /// Key id written into the JWT header and required on the way back.
    pub jwt_key_id: String,
    /// Retired keys: they sign nothing new, and verify access tokens until those expire.
    pub jwt_retired_keys: Vec<JwtKey>,
    /// `iss` of access tokens.
    pub jwt_issuer: String,
    /// `aud` of access tokens.
    pub jwt_audience: String,
    /// Lifetime of an access token.
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (renewed by each rotation).
    pub refresh_token_ttl: Duration,
    /// How long a session's standing (not ended) is trusted before the event store is asked
    /// again: the longest an access token keeps working after its session ended elsewhere.
    pub session_check_ttl: Duration,
    /// Password hashing cost.
    pub argon2: Argon2Settings,
    /// How many password hashes may run at once (each takes a core for a while).
    pub max_concurrent_hashes: usize,
    /// Longest wait a query makes for `x-keyframe-min-position`.
    pub read_your_writes_timeout: Duration,
    /// Whether the refresh cookie is `Secure` (on behind TLS; off for plain-HTTP development).
    pub secure_cookies: bool,
    /// Largest JSON body accepted.
    pub json_body_limit_bytes: usize,
    /// Append statements in flight at once (see [`keyframe_eventlog::append`]).
    pub append_writers: usize,
    /// Outgoing mail.
    pub mail: MailSettings,
    /// Whether login waits until the e-mail address is verified.
    pub require_email_verification: bool,
    /// How long a mailed verification token works.
    pub email_verification_ttl: Duration,
    /// How long a mailed password-reset token works.
    pub password_reset_ttl: Duration,
    /// How long a mailed invitation to an organisation works.
    pub invitation_ttl: Duration,
    /// When failed logins lock an account.
    pub lockout: LockoutPolicy,
    /// The master key of envelope encryption (32 bytes, base64), and its id.
    pub master_key: MasterKeySetting,
    /// The administrator to make sure of at start-up: e-mail and password.
    pub first_admin: Option<(String, String)>,
    /// Rate limits.
    pub rate_limits: crate::limits::RateLimitSettings,
    /// Served behind TLS (a terminating proxy): HSTS on every answer, `Secure` cookies.
    pub behind_tls: bool,
    /// Origins allowed by CORS (`https://app.example.com`); none: same-origin only.
    pub cors_origins: Vec<String>,
    /// Where uploads and artifacts are stored.
    pub storage: keyframe_media::storage::StorageConfig,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Storage each user's videos may take, in bytes.
    pub storage_quota_bytes: u64,
    /// Storage each organisation's videos may take, in bytes.
    pub organization_storage_quota_bytes: u64,
    /// Automatic retries of a job when the request names none.
    pub default_max_retries: u32,
    /// Credits every new account is granted.
    pub signup_bonus_credits: i64,
    /// What jobs cost.
    pub pricing: keyframe_domain::pricing::Pricing,
    /// Subscriptions and Stripe.
    pub billing: BillingSettings,
    /// Sees every answer a route gives (tests hold the server to its OpenAPI document with it).
    pub answer_observer: Option<crate::AnswerObserver>,
    /// What `/health/ready` and `/metrics` watch of the pipeline.
    pub pipeline: PipelineWatch,
    /// A listener of its own for `GET /metrics`, off the public one; none: on the API's.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// What readiness and metrics watch of the event pipeline.
#[derive(Debug, Clone)]
pub struct PipelineWatch {
    /// The JetStream stream of the log (`<PREFIX>_EVENTS`).
    pub events_stream: String,
    /// The subjects of the job events (`<prefix>.events.Job.>`), which live progress streams
    /// follow.
    pub job_events: String,
    /// The service's durable consumers on it, whose pending messages `/metrics` shows.
    pub consumers: Vec<String>,
    /// Past this, a read model (or the relay) with an event older than this still unapplied
    /// (unpublished) makes `/health/ready` answer 503.
    pub stall_after: Duration,
}

impl Default for PipelineWatch {
    fn default() -> Self {
        Self {
            events_stream: "KEYFRAME_EVENTS".to_owned(),
            job_events: "keyframe.events.Job.>".to_owned(),
            consumers: Vec::new(),
            stall_after: Duration::from_secs(60),
        }
    }
}

// By hand, so that secrets (the JWT keys, the SMTP password) never reach a log.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("jwt_key_id", &self.jwt_key_id)
            .field("jwt_retired_keys", &self.jwt_retired_keys)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("argon2", &self.argon2)
            .field("smtp", &self.mail.smtp_url.is_some())
            .field("require_email_verification", &self.require_email_verification)
            .field("lockout", &self.lockout)
            .field("storage", &self.storage)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("storage_quota_bytes", &self.storage_quota_bytes)
            .field(
                "organization_storage_quota_bytes",
                &self.organization_storage_quota_bytes,
            )
            .field("stripe", &self.billing.stripe)
            .field("plans", &self.billing.plans)
            .finish_non_exhaustive()
    }
}

impl ApiSettings {
    /// Development defaults around a secret.
    pub fn new(jwt_secret: impl Into<String>) -> Self {
        Self {
            jwt_secret: jwt_secret.into(),
            jwt_key_id: "k1".to_owned(),
            jwt_retired_keys: Vec::new(),
            jwt_issuer: "keyframe".to_owned(),
            jwt_audience: "keyframe-api".to_owned(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            session_check_ttl: Duration::from_millis(500),
            argon2: Argon2Settings::OWASP,
            max_concurrent_hashes: 2,
            read_your_writes_timeout: Duration::from_secs(5),
            secure_cookies: false,
            json_body_limit_bytes: 64 * 1024,
            append_writers: keyframe_eventlog::append::DEFAULT_WRITERS,
            mail: MailSettings {
                smtp_url: None,
                from: "Keyframe <no-reply@keyframe.invalid>".to_owned(),
                dir: PathBuf::from("./data/mail"),
                public_url: "http://127.0.0.1:8080".to_owned(),
            },
            require_email_verification: true,
            email_verification_ttl: Duration::from_secs(24 * 3600),
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            password_reset_ttl: Duration::from_secs(3600),
            lockout: LockoutPolicy {
                threshold: 5,
                window: chrono::Duration::minutes(15),
                lock_for: chrono::Duration::minutes(15),
            },
            master_key: MasterKeySetting {
                id: "m1".to_owned(),
                base64: None,
            },
            first_admin: None,
            rate_limits: crate::limits::RateLimitSettings::default(),
            behind_tls: false,
            cors_origins: Vec::new(),
            storage: keyframe_media::storage::StorageConfig::Local {
                root: PathBuf::from("./data/storage"),
            },
            max_upload_bytes: 2 * 1024 * 1024 * 1024,
            storage_quota_bytes: 5 * 1024 * 1024 * 1024,
            organization_storage_quota_bytes: 50 * 1024 * 1024 * 1024,
            default_max_retries: 2,
            signup_bonus_credits: 100,
            pricing: keyframe_domain::pricing::Pricing::default(),
            billing: BillingSettings {
                success_url: "http://127.0.0.1:8080/billing/success".to_owned(),
                cancel_url: "http://127.0.0.1:8080/billing/cancelled".to_owned(),
                ..BillingSettings::default()
            },
            answer_observer: None,
            pipeline: PipelineWatch::default(),
            metrics_addr: None,
        }
    }
}
