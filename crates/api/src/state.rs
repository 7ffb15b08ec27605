//! The state every handler shares: the application (use cases and what they work with) and what
//! only the HTTP edge needs (access tokens, rate limits).

use crate::auth::tokens::Tokens;
use crate::job_events::{JobEventSource, JobEvents};
use crate::limits::{InProcessLimiter, RateLimiter};
use crate::own_writes::OwnWrites;
use crate::settings::ApiSettings;
use keyframe_app::buses::Buses;
use keyframe_app::lockout::LoginGate;
use keyframe_app::mail::Mailer;
use keyframe_app::memberships::MembershipGuard;
use keyframe_app::passwords::Passwords;
use keyframe_app::secrets::MasterKey;
use keyframe_app::session_guard::SessionGuard;
use keyframe_billing::stripe::StripeClient;
use keyframe_database::Database;
use keyframe_eventlog::wake::LocalRelay;
use keyframe_media::storage::Storage;
use std::ops::Deref;
use std::sync::Arc;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(pub Arc<Api>);

impl Deref for AppState {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.0
    }
}

/// The API's parts.
pub struct Api {
    /// The use cases, with the buses, the pool and the storage they work with.
    pub app: keyframe_app::App,
    /// The NATS connection, for readiness; `None` in a deployment without NATS.
    pub nats: Option<async_nats::Client>,
    /// Access tokens (JWTs), issued and checked.
    pub tokens: Tokens,
    /// Request counters for the rate limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// Each session's newest write, which its reads wait for.
    pub own_writes: OwnWrites,
    /// Live job events for the progress streams.
    pub job_events: JobEvents,
    /// Settings.
    pub settings: ApiSettings,
}

impl Api {
    /// The database: event store and read models.
    pub fn database(&self) -> &Database {
        &self.app.database
    }

    /// The command buses.
    pub fn buses(&self) -> &Buses {
        &self.app.buses
    }
}

impl AppState {
    /// Assembles the state around `buses`, the process's command buses (shared with the jobs
    /// coordinator and the billing settlement when they run here).
    /// `nats` is the process's NATS connection; without one (a deployment without NATS), the
    /// progress streams hear job events by tailing the log, woken by `local`'s commits.
    pub fn new(
        database: Database,
        nats: Option<async_nats::Client>,
        local: LocalRelay,
        settings: ApiSettings,
        buses: Buses,
    ) -> anyhow::Result<Self> {
        let job_events = JobEvents::new(match &nats {
            Some(nats) => JobEventSource::JetStream {
                nats: nats.clone(),
                stream: settings.pipeline.events_stream.clone(),
                subject: settings.pipeline.job_events.clone(),
            },
            None => JobEventSource::Log {
                database: database.clone(),
                local,
            },
        });
        let app = keyframe_app::App {
            database,
            buses,
            storage: Storage::open(&settings.storage)?,
            passwords: Passwords::new(settings.argon2, settings.max_concurrent_hashes)
                .map_err(|e| anyhow::anyhow!("password hashing parameters: {e}"))?,
            logins: LoginGate::default(),
            session_guard: SessionGuard::new(settings.session_check_ttl),
            memberships: MembershipGuard::new(settings.session_check_ttl),
            mailer: Arc::new(Mailer::new(&settings.mail)?),
            master_key: match &settings.master_key.base64 {
                Some(encoded) => MasterKey::from_base64(&settings.master_key.id, encoded)?,
                None => MasterKey::random(&settings.master_key.id),
            },
            billing: keyframe_app::subscriptions::Billing {
                settings: settings.billing.clone(),
                stripe: settings.billing.stripe.clone().map(|config| {
                    // Idempotent; the binary installs it first, embedders may not have.
                    keyframe_media::storage::install_tls_provider();
                    StripeClient::new(config)
                }),
            },
            settings: keyframe_app::Settings {
                pricing: settings.pricing,
                default_max_retries: settings.default_max_retries,
                max_upload_bytes: settings.max_upload_bytes,
                storage_quota_bytes: settings.storage_quota_bytes,
                organization_storage_quota_bytes: settings.organization_storage_quota_bytes,
                signup_bonus_credits: settings.signup_bonus_credits,
                identity: keyframe_app::IdentitySettings {
                    refresh_token_ttl: settings.refresh_token_ttl,
                    email_verification_ttl: settings.email_verification_ttl,
                    password_reset_ttl: settings.password_reset_ttl,
                    invitation_ttl: settings.invitation_ttl,
                    require_email_verification: settings.require_email_verification,
                    lockout: settings.lockout,
                    sessions_list_wait: settings.read_your_writes_timeout,
                },
            },
        };
        Ok(Self(Arc::new(Api {
            app,
            tokens: Tokens::new(&settings),
            limiter: Arc::new(InProcessLimiter::default()),
            own_writes: OwnWrites::default(),
            job_events,
            nats,
            settings,
        })))
    }
}
