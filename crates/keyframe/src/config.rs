//! Configuration: every setting is an environment variable with a matching `--flag`
//! (see the README for the full list).

use crate::telemetry::LogFormat;
use clap::{Args, ValueEnum};
use keyframe_api::settings::{ApiSettings, JwtKey};
use keyframe_app::mail::MailSettings;
use keyframe_app::passwords::Argon2Settings;
use keyframe_app::secrets::MasterKeySetting;
use keyframe_domain::job::Backoff;
use keyframe_domain::user::LockoutPolicy;
use keyframe_media::storage::StorageConfig;
use keyframe_worker::coordinator::CoordinatorSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings every subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The database: `postgres://user@host/database`, or an SQLite file `sqlite://path`. Unset:
    /// the embedded database `keyframe.db` in the data directory, created on first start.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Log format.
    #[arg(
        long,
        env = "KEYFRAME_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
}

/// How to reach NATS.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL (`nats://host:4222`). Unset: `serve` runs every part in its one process,
    /// without NATS.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS user (with `--nats-password`).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS credentials file (instead of user and password).
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Prefix of every subject and stream name.
    #[arg(long, env = "KEYFRAME_NATS_PREFIX", default_value = "keyframe", value_parser = parse_prefix)]
    pub nats_prefix: String,
}

fn parse_prefix(raw: &str) -> Result<String, String> {
    let valid =
        !raw.is_empty() && raw.len() <= 64 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(raw.to_owned())
    } else {
        Err("use 1 to 64 letters, digits, '-' or '_'".to_owned())
    }
}

impl NatsArgs {
    /// These settings when they name a server; `None` when `NATS_URL` is unset (one process,
    /// no NATS).
    pub fn configured(&self) -> Option<&Self> {
        self.nats_url
            .as_deref()
            .is_some_and(|url| !url.trim().is_empty())
            .then_some(self)
    }

    /// Connects with these settings.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let Some(url) = self.nats_url.as_deref().filter(|url| !url.trim().is_empty()) else {
            anyhow::bail!("NATS_URL is not set: say which NATS server to use (nats://host:4222)");
        };
        let mut options = async_nats::ConnectOptions::new().name("keyframe");
        if let Some(creds) = &self.nats_creds {
            options = options.credentials_file(creds).await?;
        } else if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        Ok(options.connect(url).await?)
    }
}

/// The parts `serve` can run; all by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Component {
    /// The HTTP API.
    Api,
    /// The relay from the event store to JetStream.
    Relay,
    /// The read-model projectors.
    Projectors,
    /// The workers' counterpart: answers their requests with `Job` commands, and makes their
    /// consumer.
    Jobs,
    /// The settlement of job credits: charges or releases each run's reservation when it ends.
    Billing,
}

/// The data directory, for the tools that open the embedded database in it.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Directory of the embedded database (`keyframe.db`), as `serve` has it.
    #[arg(long, env = "KEYFRAME_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Where uploads and artifacts are stored; `serve` and `worker` must agree.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for uploads and artifacts (under `storage/`), mail files and scratch space.
    #[arg(long, env = "KEYFRAME_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Store uploads and artifacts in this S3 bucket instead of the data directory
    /// (credentials from the usual `AWS_*` variables).
    #[arg(long, env = "KEYFRAME_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Endpoint of an S3-compatible store other than AWS (`http://minio:9000`).
    #[arg(long, env = "KEYFRAME_S3_ENDPOINT", requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "KEYFRAME_S3_REGION", requires = "s3_bucket")]
    pub s3_region: Option<String>,
}

impl StorageArgs {
    /// The store these settings name.
    pub fn storage(&self) -> StorageConfig {
        match &self.s3_bucket {
            Some(bucket) => StorageConfig::S3 {
                bucket: bucket.clone(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
            },
            None => StorageConfig::Local {
                root: self.data_dir.join("storage"),
            },
        }
    }
}

/// `keyframe worker` settings.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// NATS (the `worker` user of `nats.conf` is enough).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Storage, as `serve` has it.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Jobs this worker runs at once.
    #[arg(long, env = "KEYFRAME_WORKER_CONCURRENCY", default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Milliseconds between a running job's heartbeats (progress and in-progress ack): a
    /// cancellation stops ffmpeg within about one.
    #[arg(long, env = "KEYFRAME_WORKER_HEARTBEAT_MS", default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub heartbeat_ms: u64,
    /// This worker's name in jobs' histories (default: host name and process id).
    #[arg(long, env = "KEYFRAME_WORKER_NAME")]
    pub name: Option<String>,
}

impl WorkerArgs {
    /// The worker's settings.
    pub fn settings(&self) -> keyframe_worker::runner::WorkerSettings {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
        keyframe_worker::runner::WorkerSettings {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("{host}-{}", std::process::id())),
            concurrency: usize::from(self.concurrency),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            scratch_dir: self.storage.data_dir.join("scratch"),
            analysis: keyframe_media::analysis::AnalysisOptions::default(),
            unable: None,
        }
    }
}

/// Where Keyframe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// A developer's machine: missing secrets get throw-away values.
    Development,
    /// Anything real: secrets are required.
    Production,
}

/// `keyframe serve` settings.
#[derive(Clone, Args)]
pub struct ServeArgs {
    /// NATS.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address the API listens on.
    #[arg(long, env = "KEYFRAME_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Which parts to run in this process (comma-separated).
    #[arg(long, env = "KEYFRAME_RUN", value_delimiter = ',', default_values = ["api", "relay", "projectors", "jobs", "billing"])]
    pub run: Vec<Component>,
    /// Deployment environment.
    #[arg(long, env = "KEYFRAME_ENV", value_enum, default_value = "development")]
    pub environment: Environment,
    /// Storage of uploads and artifacts.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// HMAC secret for access tokens, at least 32 bytes. Required outside development.
    #[arg(long, env = "KEYFRAME_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Master key for the secrets users keep with Keyframe (API keys, TOTP secrets): 32
    /// bytes, base64 (`openssl rand -base64 32`). Required outside development.
    #[arg(long, env = "KEYFRAME_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Id of the master key, written into what it seals.
    #[arg(long, env = "KEYFRAME_MASTER_KEY_ID", default_value = "m1")]
    pub master_key_id: String,
    /// E-mail of the first administrator, made (or promoted) at start-up.
    #[arg(long, env = "KEYFRAME_ADMIN_EMAIL", requires = "admin_password")]
    pub admin_email: Option<String>,
    /// Password of the first administrator, used only when the account does not exist yet.
    #[arg(
        long,
        env = "KEYFRAME_ADMIN_PASSWORD",
        hide_env_values = true,
        requires = "admin_email"
    )]
    pub admin_password: Option<String>,
    /// Key id of the access-token secret.
    #[arg(long, env = "KEYFRAME_JWT_KEY_ID", default_value = "k1")]
    pub jwt_key_id: String,
    /// Retired access-token keys, `kid:secret` separated by commas: they verify the tokens they
    /// signed until those expire, and sign nothing new.
    #[arg(long, env = "KEYFRAME_JWT_RETIRED_KEYS", value_delimiter = ',', value_parser = parse_retired_key,
        hide_env_values = true)]
    pub jwt_retired_keys: Vec<JwtKey>,
    /// How long, in milliseconds, a session found live is trusted before the event store is
    /// asked again: the longest an access token outlives its session ended by another process.
    #[arg(long, env = "KEYFRAME_SESSION_CHECK_TTL_MS", default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub session_check_ttl_ms: u64,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "KEYFRAME_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime in seconds.
    #[arg(long, env = "KEYFRAME_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,
    /// argon2id memory in KiB (OWASP minimum 19456; lower only for tests).
    #[arg(long, env = "KEYFRAME_ARGON2_MEMORY_KIB", default_value_t = Argon2Settings::OWASP.memory_kib)]
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    #[arg(long, env = "KEYFRAME_ARGON2_ITERATIONS", default_value_t = Argon2Settings::OWASP.iterations)]
    pub argon2_iterations: u32,
    /// Password hashes allowed to run at once (default: one core fewer than the machine has,
    /// at least 1, so a burst of logins never takes every core from the other requests).
    #[arg(long, env = "KEYFRAME_MAX_CONCURRENT_HASHES", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_hashes: Option<u16>,
    /// Longest wait, in milliseconds, of a query for its session's own newest write or for
    /// `x-keyframe-min-position`.
    #[arg(long, env = "KEYFRAME_READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 5_000)]
    pub read_your_writes_timeout_ms: u64,
    /// Serve `GET /metrics` on this address instead of the API's (keep it off the public one).
    #[arg(long, env = "KEYFRAME_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds an event may wait to be published, or applied by a read model, before
    /// `/health/ready` answers 503.
    #[arg(long, env = "KEYFRAME_PIPELINE_STALL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub pipeline_stall_secs: u64,
    /// Mark the refresh cookie `Secure` (set when served over TLS).
    #[arg(long, env = "KEYFRAME_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,
    /// SMTP server for outgoing mail: `smtp://user:password@host:587?tls=required` or
    /// `smtps://user:password@host`. Without it (development only) mails are written as `.eml`
    /// files under `<data dir>/mail`.
    #[arg(long, env = "KEYFRAME_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of Keyframe's mails.
    #[arg(
        long,
        env = "KEYFRAME_MAIL_FROM",
        default_value = "Keyframe <no-reply@keyframe.invalid>"
    )]
    pub mail_from: String,
    /// Where users reach Keyframe, for the links in mails.
    #[arg(long, env = "KEYFRAME_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// Refuse logins until the e-mail address is verified.
    #[arg(long, env = "KEYFRAME_REQUIRE_EMAIL_VERIFICATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub require_email_verification: bool,
    /// How long a verification link works, in seconds.
    #[arg(long, env = "KEYFRAME_EMAIL_VERIFICATION_TTL_SECS", default_value_t = 24 * 3600)]
    pub email_verification_ttl_secs: u64,
    /// How long a password-reset link works, in seconds.
    #[arg(long, env = "KEYFRAME_PASSWORD_RESET_TTL_SECS", default_value_t = 3600)]
    pub password_reset_ttl_secs: u64,
    /// How long an invitation to an organisation works, in seconds (7 days by default).
    #[arg(long, env = "KEYFRAME_INVITATION_TTL_SECS", default_value_t = 7 * 24 * 3600,
        value_parser = clap::value_parser!(u64).range(60..=365 * 24 * 3600))]
    pub invitation_ttl_secs: u64,
    /// Failed logins within the window that lock an account.
    #[arg(long, env = "KEYFRAME_LOCKOUT_THRESHOLD", default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub lockout_threshold: u32,
    /// How far back failed logins count, in seconds.
    #[arg(long, env = "KEYFRAME_LOCKOUT_WINDOW_SECS", default_value_t = 900)]
    pub lockout_window_secs: u32,
    /// How long a lockout lasts, in seconds.
    #[arg(long, env = "KEYFRAME_LOCKOUT_DURATION_SECS", default_value_t = 900)]
    pub lockout_duration_secs: u32,
    /// Requests per minute per client address on the auth endpoints used without a session
    /// (0: no limit).
    #[arg(long, env = "KEYFRAME_RATE_LIMIT_AUTH_PER_IP_PER_MINUTE", default_value_t = 60)]
    pub rate_limit_auth_per_ip_per_minute: u32,
    /// Logins and mail requests per account per 15 minutes (0: no limit).
    #[arg(long, env = "KEYFRAME_RATE_LIMIT_AUTH_PER_ACCOUNT_PER_15_MIN", default_value_t = 20)]
    pub rate_limit_auth_per_account_per_15_min: u32,
    /// Authenticated requests per user per minute (0: no limit).
    #[arg(long, env = "KEYFRAME_RATE_LIMIT_API_PER_USER_PER_MINUTE", default_value_t = 1_200)]
    pub rate_limit_api_per_user_per_minute: u32,
    /// Uploads per user per day (0: no limit).
    #[arg(long, env = "KEYFRAME_RATE_LIMIT_UPLOADS_PER_USER_PER_DAY", default_value_t = 200)]
    pub rate_limit_uploads_per_user_per_day: u32,
    /// Served behind a TLS-terminating proxy: HSTS on every answer, `Secure` cookies.
    #[arg(long, env = "KEYFRAME_BEHIND_TLS", default_value_t = false, action = clap::ArgAction::Set)]
    pub behind_tls: bool,
    /// Origins allowed by CORS, comma-separated (`https://app.example.com`); none: same-origin
    /// only.
    #[arg(long, env = "KEYFRAME_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Largest upload accepted, in bytes.
    #[arg(long, env = "KEYFRAME_MAX_UPLOAD_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Storage each user's videos may take, in bytes.
    #[arg(long, env = "KEYFRAME_STORAGE_QUOTA_BYTES", default_value_t = 5 * 1024 * 1024 * 1024)]
    pub storage_quota_bytes: u64,
    /// Storage each organisation's videos may take, in bytes.
    #[arg(long, env = "KEYFRAME_ORG_STORAGE_QUOTA_BYTES", default_value_t = 50 * 1024 * 1024 * 1024)]
    pub org_storage_quota_bytes: u64,
    /// Automatic retries of a failed job when its request names none (at most 5).
    #[arg(long, env = "KEYFRAME_JOB_MAX_RETRIES", default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(0..=5))]
    pub job_max_retries: u32,
    /// Delay before a job's first automatic retry, in milliseconds; each further retry waits
    /// twice as long, at most five minutes.
    #[arg(long, env = "KEYFRAME_JOB_RETRY_BASE_MS", default_value_t = 5_000)]
    pub job_retry_base_ms: u64,
    /// Seconds JetStream waits for a worker's heartbeat before giving its job to another
    /// worker: how soon the job of a worker that died moves on.
    #[arg(long, env = "KEYFRAME_WORKER_ACK_WAIT_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub worker_ack_wait_secs: u64,
    /// Credits every new account is granted (0: none).
    #[arg(long, env = "KEYFRAME_SIGNUP_BONUS_CREDITS", default_value_t = 100,
        value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub signup_bonus_credits: i64,
    /// Credits an analysis costs per started minute of video.
    #[arg(long, env = "KEYFRAME_ANALYZE_CREDITS_PER_MINUTE", default_value_t = 1,
        value_parser = clap::value_parser!(i64).range(0..=10_000))]
    pub analyze_credits_per_minute: i64,
    /// Credits a clip job costs (flat).
    #[arg(long, env = "KEYFRAME_CLIP_CREDITS", default_value_t = 2,
        value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub clip_credits: i64,
    /// Subscription plans, `name:monthly_credits[:stripe_price_id]`, comma-separated; a plan
    /// without a Stripe price cannot be bought (the first such is the free plan).
    #[arg(long, env = "KEYFRAME_PLANS", default_value = "free:0,pro:1000,studio:5000")]
    pub plans: keyframe_billing::plans::Plans,
    /// Seconds a job (or retry) has to record the run it reserved credits for before the
    /// settlement releases the reservation (a process stopped between the two).
    #[arg(long, env = "KEYFRAME_RESERVATION_GRACE_SECS", default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reservation_grace_secs: u64,
    /// Stripe's API (a test server in tests).
    #[arg(long, env = "KEYFRAME_STRIPE_API_BASE", default_value = "https://api.stripe.com")]
    pub stripe_api_base: String,
    /// Stripe's secret API key (`sk_...`); without it checkout answers 503.
    #[arg(long, env = "KEYFRAME_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// The webhook endpoint's signing secret (`whsec_...`); without it webhooks answer 503.
    #[arg(long, env = "KEYFRAME_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// Where Stripe sends a buyer after paying (default: `<public url>/billing/success`).
    #[arg(long, env = "KEYFRAME_STRIPE_SUCCESS_URL")]
    pub stripe_success_url: Option<String>,
    /// Where Stripe sends a buyer who turns back (default: `<public url>/billing/cancelled`).
    #[arg(long, env = "KEYFRAME_STRIPE_CANCEL_URL")]
    pub stripe_cancel_url: Option<String>,
    /// Database connections at most (on SQLite: reading connections; one writes).
    #[arg(long, env = "KEYFRAME_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
    /// Video workers `serve` runs in its own process when there is no NATS (0: none). With
    /// NATS, workers are processes of their own (`keyframe worker`).
    #[arg(long, env = "KEYFRAME_WORKERS", default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(0..=64))]
    pub workers: u16,
    /// Event-append statements in flight at once; appends that arrive meanwhile are committed
    /// together (group commit). Fewer means larger batches and less CPU per command.
    #[arg(long, env = "KEYFRAME_DB_APPEND_WRITERS", default_value_t = keyframe_eventlog::append::DEFAULT_WRITERS as u16,
        value_parser = clap::value_parser!(u16).range(1..=64))]
    pub db_append_writers: u16,
}

fn parse_retired_key(raw: &str) -> Result<JwtKey, String> {
    match raw.split_once(':') {
        Some((id, secret)) if !id.is_empty() && secret.len() >= JWT_SECRET_MIN_BYTES => Ok(JwtKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        _ => Err(format!(
            "write each key as kid:secret, the secret at least {JWT_SECRET_MIN_BYTES} bytes"
        )),
    }
}

// By hand: the secrets (JWT keys, master key, admin password, SMTP URL) never reach a log.
impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("addr", &self.addr)
            .field("run", &self.run)
            .field("environment", &self.environment)
            .field("storage", &self.storage)
            .field("admin_email", &self.admin_email)
            .finish_non_exhaustive()
    }
}

impl ServeArgs {
    /// How the `billing` component settles.
    pub fn settlement_settings(&self) -> keyframe_billing::settlement::SettlementSettings {
        keyframe_billing::settlement::SettlementSettings {
            reservation_grace: Duration::from_secs(self.reservation_grace_secs),
            signup_bonus_credits: self.signup_bonus_credits,
            free_plan: self.plans.free().cloned(),
        }
    }

    /// The video workers of a process without NATS, if it runs any.
    pub fn in_process_workers(&self) -> Option<keyframe_worker::runner::WorkerSettings> {
        (self.workers > 0 && self.nats.configured().is_none()).then(|| keyframe_worker::runner::WorkerSettings {
            name: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "keyframe".to_owned()),
                std::process::id()
            ),
            concurrency: usize::from(self.workers),
            heartbeat: Duration::from_secs(1),
            scratch_dir: self.storage.data_dir.join("scratch"),
            analysis: keyframe_media::analysis::AnalysisOptions::default(),
            unable: None,
        })
    }

    /// How the `jobs` component treats workers.
    pub fn coordinator_settings(&self) -> CoordinatorSettings {
        let base = chrono::Duration::milliseconds(i64::try_from(self.job_retry_base_ms).unwrap_or(i64::MAX));
        CoordinatorSettings {
            worker_ack_wait: Duration::from_secs(self.worker_ack_wait_secs),
            retry_backoff: Backoff {
                base,
                max: chrono::Duration::minutes(5).max(base),
            },
        }
    }
}

/// Shortest accepted JWT secret: HS256 wants a key at least as long as its output.
const JWT_SECRET_MIN_BYTES: usize = 32;

impl ServeArgs {
    /// The API settings; refuses to go on without a real secret outside development.
    pub fn api_settings(&self) -> anyhow::Result<ApiSettings> {
        let secret = match (&self.jwt_secret, self.environment) {
            (Some(secret), _) if secret.len() >= JWT_SECRET_MIN_BYTES => secret.clone(),
            (Some(_), _) => anyhow::bail!("KEYFRAME_JWT_SECRET must be at least {JWT_SECRET_MIN_BYTES} bytes"),
            (None, Environment::Production) => anyhow::bail!("KEYFRAME_JWT_SECRET is required outside development"),
            (None, Environment::Development) => crate::dev_secrets::jwt_secret(&self.storage.data_dir)?,
        };
        if self.environment == Environment::Production && self.argon2_memory_kib < Argon2Settings::OWASP.memory_kib {
            anyhow::bail!("argon2 memory below the OWASP minimum is for tests only, not production");
        }
        let mut settings = ApiSettings::new(secret);
        settings.jwt_key_id = self.jwt_key_id.clone();
        if self.jwt_retired_keys.iter().any(|key| key.id == self.jwt_key_id) {
            anyhow::bail!("KEYFRAME_JWT_RETIRED_KEYS reuses the active key id {}", self.jwt_key_id);
        }
        settings.jwt_retired_keys = self.jwt_retired_keys.clone();
        settings.session_check_ttl = Duration::from_millis(self.session_check_ttl_ms);
        settings.access_token_ttl = Duration::from_secs(self.access_token_ttl_secs);
        settings.refresh_token_ttl = Duration::from_secs(self.refresh_token_ttl_secs);
        settings.argon2 = Argon2Settings {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: 1,
        };
        settings.max_concurrent_hashes = self.max_concurrent_hashes.map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, std::num::NonZeroUsize::get)
                    .saturating_sub(1)
                    .max(1)
            },
            usize::from,
        );
        settings.read_your_writes_timeout = Duration::from_millis(self.read_your_writes_timeout_ms);
        settings.metrics_addr = self.metrics_addr;
        let naming = keyframe_eventlog::streams::Naming::new(self.nats.nats_prefix.clone());
        settings.pipeline = keyframe_api::settings::PipelineWatch {
            events_stream: naming.events_stream(),
            job_events: naming.aggregate_events_filter("Job"),
            consumers: crate::SERVICE_CONSUMERS.iter().map(|name| (*name).to_owned()).collect(),
            stall_after: Duration::from_secs(self.pipeline_stall_secs),
        };
        settings.secure_cookies = self.secure_cookies;
        settings.append_writers = usize::from(self.db_append_writers);
        if self.smtp_url.is_none() && self.environment == Environment::Production {
            anyhow::bail!("KEYFRAME_SMTP_URL is required outside development (mails would only be written to files)");
        }
        settings.mail = MailSettings {
            smtp_url: self.smtp_url.clone(),
            from: self.mail_from.clone(),
            dir: self.storage.data_dir.join("mail"),
            public_url: self.public_url.clone(),
        };
        settings.require_email_verification = self.require_email_verification;
        let master_key = match (&self.master_key, self.environment) {
            (Some(key), _) => key.clone(),
            (None, Environment::Production) => anyhow::bail!(
                "KEYFRAME_MASTER_KEY is required outside development (32 bytes, base64: openssl rand -base64 32)"
            ),
            (None, Environment::Development) => crate::dev_secrets::master_key(&self.storage.data_dir)?,
        };
        keyframe_app::secrets::MasterKey::from_base64(&self.master_key_id, &master_key)
            .map_err(|e| anyhow::anyhow!("KEYFRAME_MASTER_KEY: {e}"))?;
        settings.first_admin = self.admin_email.clone().zip(self.admin_password.clone());
        settings.rate_limits = keyframe_api::limits::RateLimitSettings {
            auth_per_ip_per_minute: self.rate_limit_auth_per_ip_per_minute,
            auth_per_account_per_15_minutes: self.rate_limit_auth_per_account_per_15_min,
            api_per_user_per_minute: self.rate_limit_api_per_user_per_minute,
            uploads_per_user_per_day: self.rate_limit_uploads_per_user_per_day,
        };
        settings.behind_tls = self.behind_tls;
        settings.cors_origins = self.cors_origins.clone();
        settings.master_key = MasterKeySetting {
            id: self.master_key_id.clone(),
            base64: Some(master_key),
        };
        settings.email_verification_ttl = Duration::from_secs(self.email_verification_ttl_secs);
        settings.password_reset_ttl = Duration::from_secs(self.password_reset_ttl_secs);
        settings.invitation_ttl = Duration::from_secs(self.invitation_ttl_secs);
        settings.storage = self.storage.storage();
        settings.max_upload_bytes = self.max_upload_bytes;
        settings.storage_quota_bytes = self.storage_quota_bytes;
        settings.organization_storage_quota_bytes = self.org_storage_quota_bytes;
        settings.default_max_retries = self.job_max_retries;
        settings.signup_bonus_credits = self.signup_bonus_credits;
        let public_url = self.public_url.trim_end_matches('/');
        settings.billing = keyframe_app::subscriptions::BillingSettings {
            plans: self.plans.clone(),
            stripe: self
                .stripe_secret_key
                .clone()
                .map(|secret_key| keyframe_billing::stripe::StripeConfig {
                    api_base: self.stripe_api_base.clone(),
                    secret_key,
                }),
            webhook_secret: self.stripe_webhook_secret.clone(),
            success_url: (self.stripe_success_url.clone()).unwrap_or_else(|| format!("{public_url}/billing/success")),
            cancel_url: (self.stripe_cancel_url.clone()).unwrap_or_else(|| format!("{public_url}/billing/cancelled")),
        };
        settings.pricing = keyframe_domain::pricing::Pricing {
            analyze_per_minute: self.analyze_credits_per_minute,
            clip: self.clip_credits,
        };
        settings.lockout = LockoutPolicy {
            threshold: self.lockout_threshold,
            window: chrono::Duration::seconds(i64::from(self.lockout_window_secs)),
            lock_for: chrono::Duration::seconds(i64::from(self.lockout_duration_secs)),
        };
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    const SECRET: &str = "a-jwt-secret-of-at-least-32-bytes-long";
    const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn production(extra: &[&str]) -> anyhow::Result<ApiSettings> {
        let args = ["keyframe", "serve", "--environment", "production"]
            .into_iter()
            .chain(extra.iter().copied());
        let cli = Cli::try_parse_from(args)?;
        let Command::Serve(serve) = cli.command else {
            anyhow::bail!("not serve");
        };
        serve.api_settings()
    }

    fn refusal(extra: &[&str]) -> String {
        format!("{:#}", production(extra).expect_err("refused"))
    }

    #[test]
    fn production_refuses_to_start_without_real_secrets() {
        let smtp = ["--smtp-url", "smtp://mail.example.com:587?tls=required"];
        let all = [&["--jwt-secret", SECRET, "--master-key", MASTER_KEY][..], &smtp[..]].concat();
        assert!(production(&all).is_ok(), "starts with every secret");

        let no_jwt = [&["--master-key", MASTER_KEY][..], &smtp[..]].concat();
        assert!(refusal(&no_jwt).contains("KEYFRAME_JWT_SECRET is required"));
        let short_jwt = [
            &["--jwt-secret", "too-short", "--master-key", MASTER_KEY][..],
            &smtp[..],
        ]
        .concat();
        assert!(refusal(&short_jwt).contains("at least 32 bytes"));
        let no_master = [&["--jwt-secret", SECRET][..], &smtp[..]].concat();
        assert!(refusal(&no_master).contains("KEYFRAME_MASTER_KEY is required"));
        let bad_master = [&["--jwt-secret", SECRET, "--master-key", "c2hvcnQ="][..], &smtp[..]].concat();
        assert!(refusal(&bad_master).contains("32 bytes"));
        assert!(
            refusal(&["--jwt-secret", SECRET, "--master-key", MASTER_KEY]).contains("KEYFRAME_SMTP_URL is required")
        );
    }
}
