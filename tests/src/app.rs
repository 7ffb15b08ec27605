//! The application under test: the real service on port 0 with its own database, NATS prefix, SMTP
//! server and storage, built by [`TestAppBuilder`], and sibling API processes.

use crate::contract;
use crate::smtp::SmtpInbox;
use crate::{TestDatabase, TestNats, TestStore, http_client};
use keyframe::app::{AppConfig, Application};
use keyframe::config::Component;
use keyframe_api::settings::ApiSettings;
use keyframe_app::passwords::Argon2Settings;
use keyframe_billing::settlement::SettlementSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// API settings for tests: cheap argon2 (explicitly; production refuses it), a fixed secret.
pub fn test_api_settings() -> ApiSettings {
    let mut settings = ApiSettings::new("test-secret-test-secret-test-secret-0123");
    settings.argon2 = Argon2Settings {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    settings.max_concurrent_hashes = 4;
    // Tests make many requests from one address and account; the rate-limit tests set their own.
    settings.rate_limits = keyframe_api::limits::RateLimitSettings {
        auth_per_ip_per_minute: 10_000,
        auth_per_account_per_15_minutes: 10_000,
        api_per_user_per_minute: 100_000,
        uploads_per_user_per_day: 10_000,
    };
    // Only used when a test gives no SMTP server: never the working tree.
    settings.mail.dir = std::env::temp_dir().join("keyframe-test-mail");
    // Each test stores its uploads apart (removed when its `TestApp` drops).
    settings.storage = keyframe_media::storage::StorageConfig::Local {
        root: std::env::temp_dir().join(format!("keyframe-test-storage-{}", uuid::Uuid::now_v7().simple())),
    };
    settings
}

/// Workers' treatment for tests: a dead worker's job moves on after 3 s, retries follow
/// after 200 ms.
pub fn test_coordinator_settings() -> keyframe_worker::coordinator::CoordinatorSettings {
    keyframe_worker::coordinator::CoordinatorSettings {
        worker_ack_wait: Duration::from_secs(3),
        retry_backoff: keyframe_domain::job::Backoff {
            base: chrono::Duration::milliseconds(200),
            max: chrono::Duration::seconds(2),
        },
    }
}

/// The real service on port 0 with its own database and NATS prefix.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The HTTP client.
    pub http: reqwest::Client,
    app: Option<Application>,
    /// What it was started with.
    config: AppConfig,
    /// Its NATS prefix; `None` when it runs without NATS.
    nats: Option<TestNats>,
    /// The SMTP server its mails go to.
    pub mail: SmtpInbox,
    /// Its database (dropped last).
    pub db: TestStore,
    /// Where its uploads and artifacts are stored.
    pub storage: keyframe_media::storage::StorageConfig,
    /// The answers its API processes gave, checked against the OpenAPI document on drop.
    pub contract: contract::Contract,
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Its id.
    pub id: String,
    /// Its e-mail.
    pub email: String,
    /// The password it registered with.
    pub password: String,
    /// Current access token.
    pub access_token: String,
    /// Current refresh token.
    pub refresh_token: String,
}

impl TestApp {
    /// Starts the API, relay and projectors with the test settings.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// A builder, to choose the parts that run and the API's settings.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            components: vec![Component::Api, Component::Relay, Component::Projectors],
            api: test_api_settings(),
            embedded: crate::suite() == crate::Suite::Embedded,
            nats: crate::suite() == crate::Suite::Postgres,
            postgres: None,
            reservation_grace: None,
        }
    }

    /// Its NATS prefix; a test that calls this needs NATS (it panics on an app without).
    pub fn nats(&self) -> &TestNats {
        self.nats
            .as_ref()
            .expect("this test needs NATS; it runs in the Postgres and NATS suite")
    }

    /// A second API process on the same database, NATS prefix and SMTP server, as in a
    /// deployment with several replicas (a builder, to give it settings of its own). It stops
    /// when its handle drops.
    pub fn sibling(&self) -> SiblingBuilder<'_> {
        assert!(
            self.nats.is_some(),
            "this test needs Postgres and NATS (a second process); it runs in the Postgres and NATS suite"
        );
        SiblingBuilder {
            of: self,
            api: test_api_settings(),
        }
    }

    /// Without NATS, the process's job queue and desk, for its workers.
    pub fn in_process_jobs(&self) -> Option<&keyframe::app::InProcessJobs> {
        self.app.as_ref().and_then(Application::in_process_jobs)
    }

    /// How many passwords the API verified against accounts' real hashes so far (what the
    /// lockout bounds).
    pub fn passwords_verified(&self) -> u64 {
        self.app
            .as_ref()
            .and_then(Application::api)
            .map_or(0, |api| api.app.passwords.verified_against_accounts())
    }

    /// Stops the service (the database and stream stay until the handle drops).
    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// Stops the service and starts it again on the same database, storage and settings, as
    /// an operator's restart would (it listens on a new port: [`TestApp::base_url`] follows).
    pub async fn restart(&mut self) {
        self.stop().await;
        let app = Application::build(self.config.clone())
            .await
            .expect("the application starts again");
        self.base_url = app
            .local_addr()
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        if let TestStore::Embedded(db) = &mut self.db {
            db.database = app.database().clone();
        }
        self.app = Some(app);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(app) = self.app.as_mut() {
            app.abort();
        }
        if let keyframe_media::storage::StorageConfig::Local { root } = &self.storage {
            let _ = std::fs::remove_dir_all(root);
        }
        // A test that failed already says why; one that passed must also have been answered
        // only as the document promises.
        let violations = self.contract.violations();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "answers the OpenAPI document does not list:\n  {}",
                violations.join("\n  ")
            );
        }
    }
}

impl TestApp {
    /// Every file under the storage root (empty when nothing is stored).
    pub fn stored_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, files: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, files);
                } else {
                    files.push(path);
                }
            }
        }
        let mut files = Vec::new();
        if let keyframe_media::storage::StorageConfig::Local { root } = &self.storage {
            walk(root, &mut files);
        }
        files
    }
}

/// Another API process of a [`TestApp`].
pub struct Sibling {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    app: Application,
}

impl Sibling {
    /// How many passwords this API process verified against accounts' real hashes so far.
    pub fn passwords_verified(&self) -> u64 {
        self.app
            .api()
            .map_or(0, |api| api.app.passwords.verified_against_accounts())
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        self.app.abort();
    }
}

/// Builds a [`TestApp`]: [`TestApp::builder`], then what differs from the defaults, then
/// [`TestAppBuilder::spawn`].
pub struct TestAppBuilder {
    components: Vec<Component>,
    api: ApiSettings,
    embedded: bool,
    nats: bool,
    postgres: Option<TestDatabase>,
    reservation_grace: Option<Duration>,
}

impl TestAppBuilder {
    /// Runs only these parts (by default the API, the relay and the projectors).
    pub fn components(mut self, components: Vec<Component>) -> Self {
        self.components = components;
        self
    }

    /// Runs it as one process without Postgres and NATS: on an embedded database of its own,
    /// its read models and progress streams following the log in the process, with the API,
    /// the projectors and the jobs (an in-process worker) unless told otherwise.
    pub fn embedded(mut self) -> Self {
        self.embedded = true;
        self.without_nats()
    }

    /// Runs it on `database` (a Postgres database the test prepared) instead of a fresh one.
    pub fn postgres(mut self, database: TestDatabase) -> Self {
        self.embedded = false;
        self.postgres = Some(database);
        self
    }

    /// Runs it as one process without NATS (on Postgres unless [`TestAppBuilder::embedded`]):
    /// its read models, progress streams and settlement follow the log in the process, and it
    /// runs its own worker, with the API, the projectors, the jobs and the billing unless told
    /// otherwise.
    pub fn without_nats(mut self) -> Self {
        self.nats = false;
        self.components = vec![
            Component::Api,
            Component::Projectors,
            Component::Jobs,
            Component::Billing,
        ];
        self
    }

    /// How long its settlement gives a reservation's job to appear before releasing the
    /// credits (by default the production two minutes).
    pub fn reservation_grace(mut self, grace: Duration) -> Self {
        self.reservation_grace = Some(grace);
        self
    }

    /// The API's settings (by default [`test_api_settings`]); its mail goes to the test's SMTP
    /// server whatever they say.
    pub fn settings(mut self, api: ApiSettings) -> Self {
        self.api = api;
        self
    }

    /// Starts it, with its own database, NATS prefix, SMTP server and storage.
    pub async fn spawn(self) -> TestApp {
        let TestAppBuilder {
            components,
            mut api,
            embedded,
            nats,
            postgres: prepared,
            reservation_grace,
        } = self;
        // The embedded database is the application's to open (one handle writes a file); the
        // test reads through the application's handle.
        let (postgres, embedded) = match (embedded, prepared) {
            (true, _) => (None, Some(crate::EmbeddedDatabase::place())),
            (false, Some(prepared)) => (Some(prepared), None),
            (false, None) => (Some(TestDatabase::create().await), None),
        };
        let nats = if nats { Some(TestNats::create().await) } else { None };
        let mail = SmtpInbox::start().await;
        api.mail.smtp_url = Some(mail.url());
        let contract = contract::Contract::default();
        api.answer_observer = Some(contract.observer());
        if let Some(nats) = &nats {
            api.pipeline.events_stream = nats.naming.events_stream();
            api.pipeline.job_events = nats.naming.aggregate_events_filter("Job");
        }
        api.pipeline.consumers = keyframe::SERVICE_CONSUMERS
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        let storage = api.storage.clone();
        // Without NATS one process runs every part, whichever the test named.
        let components = if nats.is_none() {
            vec![
                Component::Api,
                Component::Projectors,
                Component::Jobs,
                Component::Billing,
            ]
        } else {
            components
        };
        // One deployment's parts share their configuration: the settlement's bonus and free
        // plan are the API's.
        let billing = SettlementSettings {
            signup_bonus_credits: api.signup_bonus_credits,
            free_plan: api.billing.plans.free().cloned(),
            reservation_grace: reservation_grace.unwrap_or(SettlementSettings::default().reservation_grace),
        };
        let config = AppConfig {
            database: match (&postgres, &embedded) {
                (Some(db), _) => keyframe::database::DatabaseTarget::Postgres(db.url.clone()),
                (None, Some((_, path))) => keyframe::database::DatabaseTarget::Sqlite(path.clone()),
                (None, None) => unreachable!("one database or the other"),
            },
            db_max_connections: 10,
            nats: nats.as_ref().map(TestNats::args),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            components,
            api,
            jobs: test_coordinator_settings(),
            billing,
            // Without NATS the test starts the process's workers itself (`spawn_worker`).
            workers: None,
        };
        let app = Application::build(config.clone())
            .await
            .expect("the application starts");
        let db = match (postgres, embedded) {
            (Some(db), _) => TestStore::Postgres(db),
            (None, Some((dir, path))) => TestStore::Embedded(crate::EmbeddedDatabase {
                dir,
                path,
                database: app.database().clone(),
            }),
            (None, None) => unreachable!("one database or the other"),
        };
        let base_url = app
            .local_addr()
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        TestApp {
            base_url,
            http: http_client(),
            app: Some(app),
            config,
            nats,
            mail,
            db,
            storage,
            contract,
        }
    }
}

/// Builds a sibling API process of a [`TestApp`]: [`TestApp::sibling`], then
/// [`SiblingBuilder::spawn`].
pub struct SiblingBuilder<'a> {
    of: &'a TestApp,
    api: ApiSettings,
}

impl SiblingBuilder<'_> {
    /// Its API settings (by default [`test_api_settings`]).
    pub fn settings(mut self, api: ApiSettings) -> Self {
        self.api = api;
        self
    }

    /// Starts it.
    pub async fn spawn(self) -> Sibling {
        self.try_spawn().await.expect("the sibling starts")
    }

    /// Starts it, answering why it did not start.
    pub async fn try_spawn(self) -> anyhow::Result<Sibling> {
        let SiblingBuilder { of, mut api } = self;
        api.mail.smtp_url = Some(of.mail.url());
        api.answer_observer = Some(of.contract.observer());
        let config = AppConfig {
            database: keyframe::database::DatabaseTarget::Postgres(of.db.postgres().url.clone()),
            db_max_connections: 4,
            nats: Some(of.nats().args()),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            components: vec![Component::Api],
            api,
            jobs: test_coordinator_settings(),
            billing: Default::default(),
            workers: None,
        };
        let app = Application::build(config).await?;
        let base_url = app
            .local_addr()
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        Ok(Sibling { base_url, app })
    }
}
