//! The state every handler shares.

use crate::auth::guard::SessionGuard;
use crate::auth::lockout::LoginGate;
use crate::auth::passwords::Passwords;
use crate::auth::tokens::Tokens;
use crate::limits::{InProcessLimiter, RateLimiter};
use crate::mail::Mailer;
use crate::secrets::MasterKey;
use crate::settings::ApiSettings;
use keyframe_billing::stripe::StripeClient;
use keyframe_domain::job::Job;
use keyframe_domain::ledger::CreditLedger;
use keyframe_domain::library::MediaLibrary;
use keyframe_domain::project::Project;
use keyframe_domain::session::Session;
use keyframe_domain::subscription::Subscription;
use keyframe_domain::user::User;
use keyframe_eventlog::commands::CommandBus;
use keyframe_eventlog::store::PgEventRepository;
use keyframe_eventlog::wake::LocalRelay;
use keyframe_media::storage::Storage;
use sqlx::PgPool;
use std::ops::Deref;
use std::sync::Arc;

/// Accounts each process keeps in memory between logins.
pub const USERS_CACHED: usize = 4_096;

/// Credit ledgers each process keeps in memory between commands.
pub const LEDGERS_CACHED: usize = 4_096;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// The application's parts.
pub struct App {
    /// The Postgres pool: event store and read models.
    pub pool: PgPool,
    /// The NATS connection, for readiness.
    pub nats: async_nats::Client,
    /// Commands for users.
    pub users: CommandBus<User>,
    /// Commands for sessions.
    pub sessions: CommandBus<Session>,
    /// Commands for projects.
    pub projects: CommandBus<Project>,
    /// Commands for users' media libraries (uploads and the storage quota).
    pub libraries: CommandBus<MediaLibrary>,
    /// Commands for jobs (shared with the settlement process when it runs here).
    pub jobs: Arc<CommandBus<Job>>,
    /// Commands for users' credit ledgers (shared with the settlement process when it runs
    /// here, so their commands on one ledger take turns instead of colliding).
    pub ledgers: Arc<CommandBus<CreditLedger>>,
    /// Commands for users' subscriptions.
    pub subscriptions: Arc<CommandBus<Subscription>>,
    /// Stripe's API, when configured.
    pub stripe: Option<StripeClient>,
    /// Where uploads and artifacts are stored.
    pub storage: Storage,
    /// Access- and refresh-token issuing and checking.
    pub tokens: Tokens,
    /// Whether an access token's session still stands.
    pub session_guard: SessionGuard,
    /// Password hashing, bounded in concurrency.
    pub passwords: Passwords,
    /// Guesses at credentials, admitted and judged under the lockout.
    pub logins: LoginGate,
    /// Outgoing mail.
    pub mailer: Arc<Mailer>,
    /// Seals and opens the secrets users keep with Keyframe (API keys, TOTP secrets).
    pub master_key: MasterKey,
    /// Request counters for the rate limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// Settings.
    pub settings: ApiSettings,
}

impl AppState {
    /// Assembles the state. Appends wake `local_relay` directly while it leads (the relay of
    /// this process, if it runs one), else the leading relay through `NOTIFY`.
    pub fn new(
        pool: PgPool,
        nats: async_nats::Client,
        settings: ApiSettings,
        local_relay: LocalRelay,
    ) -> anyhow::Result<Self> {
        // One event writer for every aggregate type, so concurrent commands share commits.
        let events = PgEventRepository::with_writers(pool.clone(), settings.append_writers, local_relay);
        Ok(Self(Arc::new(App {
            // Every guess at a password is two events on its account (admitted, then judged):
            // keep the accounts that log in in memory, so a guess reads only what is new.
            users: CommandBus::sharing(&events).cached(USERS_CACHED),
            sessions: CommandBus::sharing(&events),
            projects: CommandBus::sharing(&events),
            libraries: CommandBus::sharing(&events),
            jobs: Arc::new(CommandBus::sharing(&events)),
            // Every job request and every run's end is a command on its owner's ledger, which
            // grows with each: keep the busy ones in memory.
            ledgers: Arc::new(CommandBus::sharing(&events).cached(LEDGERS_CACHED)),
            subscriptions: Arc::new(CommandBus::sharing(&events)),
            stripe: settings.billing.stripe.clone().map(|config| {
                // Idempotent; the binary installs it first, embedders may not have.
                keyframe_media::storage::install_tls_provider();
                StripeClient::new(config)
            }),
            storage: Storage::open(&settings.storage)?,
            tokens: Tokens::new(&settings),
            session_guard: SessionGuard::new(settings.session_check_ttl),
            passwords: Passwords::new(settings.argon2, settings.max_concurrent_hashes)
                .map_err(|e| anyhow::anyhow!("password hashing parameters: {e}"))?,
            logins: LoginGate::default(),
            mailer: Arc::new(Mailer::new(&settings.mail)?),
            master_key: match &settings.master_key.base64 {
                Some(encoded) => MasterKey::from_base64(&settings.master_key.id, encoded)?,
                None => MasterKey::random(&settings.master_key.id),
            },
            limiter: Arc::new(InProcessLimiter::default()),
            pool,
            nats,
            settings,
        })))
    }
}
