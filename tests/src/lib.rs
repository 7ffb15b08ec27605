//! Test support for Keyframe's end-to-end tests: a fresh database and NATS prefix per test,
//! the real application on port 0, and a small HTTP client that speaks the API.
//!
//! Everything a test creates is removed when its handle drops (databases with `FORCE`, streams
//! by name), and leftovers of crashed runs older than two hours are swept on the next run, so
//! the shared Postgres and NATS servers do not fill up.

pub mod contract;
pub mod smtp;
pub mod stripe;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use keyframe::app::{AppConfig, Application};
use keyframe::config::{Component, NatsArgs};
use keyframe_api::settings::ApiSettings;
use keyframe_app::passwords::Argon2Settings;
use keyframe_billing::settlement::SettlementSettings;
use keyframe_domain::log::RecordedEvent;
use keyframe_eventlog::streams::Naming;
use serde_json::{Value, json};
use smtp::SmtpInbox;
use sqlx::PgPool;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Where the shared servers are (overridable like the service's own settings).
pub fn admin_database_url() -> String {
    std::env::var("KEYFRAME_TEST_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The NATS server tests use.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// How long an abandoned test database or stream lives before a later run removes it.
const STALE_AFTER_SECS: u64 = 2 * 3600;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A unique name: creation time (for stale sweeping) and randomness (for parallel runs).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        unix_now(),
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Runs async clean-up from `Drop`, which may itself run inside or outside a runtime.
fn block_on_cleanup<F: Future<Output = ()> + Send + 'static>(cleanup: F) {
    let _ = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            runtime.block_on(cleanup);
        }
    })
    .join();
}

/// A database of the test's own, migrated, dropped when the handle drops.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Its connection string.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates and migrates a fresh database.
    pub async fn create() -> Self {
        let admin = PgPool::connect(&admin_database_url())
            .await
            .expect("connect to the admin database");
        sweep_stale_databases(&admin).await;
        let name = unique("kf_test_");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let base = admin_database_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').expect("database url has a path")]);
        let pool = PgPool::connect(&url).await.expect("connect to the test database");
        keyframe_eventlog::schema::migrate(&pool).await.expect("migrate");
        Self { name, url, pool }
    }
}

async fn sweep_stale_databases(admin: &PgPool) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'kf\\_test\\_%'")
        .fetch_all(admin)
        .await
        .unwrap_or_default();
    for name in names
        .into_iter()
        .filter(|name| is_stale(name.trim_start_matches("kf_test_")))
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(admin)
            .await;
    }
}

fn is_stale(stamped: &str) -> bool {
    stamped
        .split('x')
        .next()
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|created| created + STALE_AFTER_SECS < unix_now())
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // No `pool.close().await` first: on a current-thread test runtime the pool's connections
        // are driven by the very thread this drop blocks, so waiting for them never ends.
        // `WITH (FORCE)` ends those connections instead.
        block_on_cleanup(async move {
            if let Ok(admin) = PgPool::connect(&admin_database_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
            }
        });
    }
}

/// A NATS prefix of the test's own; its stream is deleted when the handle drops.
pub struct TestNats {
    /// The naming under the prefix.
    pub naming: Naming,
    /// A client.
    pub client: async_nats::Client,
    /// JetStream on it.
    pub jetstream: jetstream::Context,
}

impl TestNats {
    /// A fresh prefix and a connection.
    pub async fn create() -> Self {
        let client = async_nats::connect(nats_url()).await.expect("connect to NATS");
        let jetstream = jetstream::new(client.clone());
        sweep_stale_streams(&jetstream).await;
        let naming = Naming::new(unique("kft"));
        Self {
            naming,
            client,
            jetstream,
        }
    }

    /// Settings pointing the service at this prefix.
    pub fn args(&self) -> NatsArgs {
        NatsArgs {
            nats_url: nats_url(),
            nats_user: None,
            nats_password: None,
            nats_creds: None,
            nats_prefix: self.naming.prefix().to_owned(),
        }
    }

    /// Every event in the stream, in stream order, with its `Nats-Msg-Id`.
    pub async fn stream_events(&self) -> Vec<(String, RecordedEvent)> {
        let Ok(mut stream) = self.jetstream.get_stream(self.naming.events_stream()).await else {
            return Vec::new();
        };
        let count = stream.info().await.expect("stream info").state.messages;
        if count == 0 {
            return Vec::new();
        }
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("ephemeral consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut events = Vec::new();
        while (events.len() as u64) < count {
            let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .expect("stream read timed out")
                .expect("stream ended")
                .expect("message");
            let id = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("Nats-Msg-Id"))
                .map(|value| value.to_string())
                .unwrap_or_default();
            events.push((id, serde_json::from_slice(&message.payload).expect("a recorded event")));
        }
        events
    }

    /// How many messages the stream holds (0 before it exists).
    pub async fn stream_len(&self) -> u64 {
        match self.jetstream.get_stream(self.naming.events_stream()).await {
            Ok(mut stream) => stream.info().await.map(|info| info.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    }
}

async fn sweep_stale_streams(jetstream: &jetstream::Context) {
    let names: Vec<String> = jetstream
        .stream_names()
        .filter_map(|name| async move { name.ok() })
        .collect()
        .await;
    for name in names
        .into_iter()
        .filter(|name| name.starts_with("KFT") && is_stale(&name[3..]))
    {
        let _ = jetstream.delete_stream(&name).await;
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let stream = self.naming.events_stream();
        block_on_cleanup(async move {
            if let Ok(client) = async_nats::connect(nats_url()).await {
                let _ = jetstream::new(client).delete_stream(&stream).await;
            }
        });
    }
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

/// An HTTP client (after making ring the TLS provider, as every Keyframe process does).
pub fn http_client() -> reqwest::Client {
    keyframe_media::storage::install_tls_provider();
    reqwest::Client::new()
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
    /// Its NATS prefix.
    pub nats: TestNats,
    /// The SMTP server its mails go to.
    pub mail: SmtpInbox,
    /// Its database (dropped last).
    pub db: TestDatabase,
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
    /// Starts the API, relay and projectors.
    pub async fn spawn() -> Self {
        Self::spawn_with(vec![Component::Api, Component::Relay, Component::Projectors]).await
    }

    /// Starts the chosen parts.
    pub async fn spawn_with(components: Vec<Component>) -> Self {
        Self::spawn_with_settings(components, test_api_settings()).await
    }

    /// Starts the chosen parts with `api` settings (its mail goes to the test's SMTP server).
    pub async fn spawn_with_settings(components: Vec<Component>, mut api: ApiSettings) -> Self {
        let db = TestDatabase::create().await;
        let nats = TestNats::create().await;
        let mail = SmtpInbox::start().await;
        api.mail.smtp_url = Some(mail.url());
        let contract = contract::Contract::default();
        api.answer_observer = Some(contract.observer());
        let storage = api.storage.clone();
        // One deployment's parts share their configuration: the settlement's bonus and free
        // plan are the API's.
        let billing = SettlementSettings {
            signup_bonus_credits: api.signup_bonus_credits,
            free_plan: api.billing.plans.free().cloned(),
            ..SettlementSettings::default()
        };
        let config = AppConfig {
            database_url: db.url.clone(),
            db_max_connections: 10,
            nats: nats.args(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            components,
            api,
            jobs: test_coordinator_settings(),
            billing,
        };
        let app = Application::build(config).await.expect("the application starts");
        let base_url = app
            .local_addr()
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        Self {
            base_url,
            http: http_client(),
            app: Some(app),
            nats,
            mail,
            db,
            storage,
            contract,
        }
    }

    /// A second API process on the same database and NATS prefix, as in a deployment with
    /// several replicas. It stops when the handle drops.
    pub async fn spawn_sibling(&self) -> Sibling {
        self.spawn_sibling_with(test_api_settings()).await
    }

    /// [`TestApp::spawn_sibling`] with `api` settings (its mail goes to the same SMTP server).
    pub async fn spawn_sibling_with(&self, api: ApiSettings) -> Sibling {
        self.try_spawn_sibling_with(api).await.expect("the sibling starts")
    }

    /// [`TestApp::spawn_sibling_with`], answering why it did not start.
    pub async fn try_spawn_sibling_with(&self, mut api: ApiSettings) -> anyhow::Result<Sibling> {
        api.mail.smtp_url = Some(self.mail.url());
        api.answer_observer = Some(self.contract.observer());
        let config = AppConfig {
            database_url: self.db.url.clone(),
            db_max_connections: 4,
            nats: self.nats.args(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            components: vec![Component::Api],
            api,
            jobs: test_coordinator_settings(),
            billing: Default::default(),
        };
        let app = Application::build(config).await?;
        let base_url = app
            .local_addr()
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        Ok(Sibling { base_url, app })
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

    /// `METHOD path` with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the request is answered")
    }

    /// `GET path` with a bearer token, read after `position` (`x-keyframe-min-position`).
    pub async fn get_after(&self, path: &str, token: &str, position: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(token)
            .header("x-keyframe-min-position", position)
            .send()
            .await
            .expect("the request is answered")
    }

    /// Proves `email` with the token from the newest verification mail sent to it.
    pub async fn verify_email(&self, email: &str) {
        let sent = self.mail.to(email).len().max(1);
        let mail = self.mail.wait_for(email, "Confirm your e-mail", sent).await;
        let verified = self
            .request(
                reqwest::Method::POST,
                "/api/v1/auth/verify-email",
                None,
                Some(json!({"token": mail.token()})),
            )
            .await;
        assert_eq!(verified.status(), 200, "verify {email}");
    }

    /// Waits until the `session_list` read model holds `count` sessions of `user_id`.
    pub async fn wait_for_sessions_projected(&self, user_id: &str, count: i64) {
        wait_for("the sessions in the read model", Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM session_list WHERE user_id = $1::uuid")
                .bind(user_id)
                .fetch_one(&self.db.pool)
                .await
                .expect("count")
                == count
        })
        .await;
    }

    /// Registers `email`, verifies it from the mail, and logs in.
    pub async fn register_and_login(&self, email: &str) -> TestUser {
        let password = "correct horse battery staple".to_owned();
        let registered = self
            .request(
                reqwest::Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(registered.status(), 201, "register {email}");
        let body: Value = registered.json().await.expect("json");
        let id = body["user"]["id"].as_str().expect("user id").to_owned();
        self.verify_email(email).await;
        let login = self
            .request(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(login.status(), 200, "login {email}");
        let tokens: Value = login.json().await.expect("json");
        TestUser {
            id,
            email: email.to_owned(),
            password,
            access_token: tokens["access_token"].as_str().expect("access token").to_owned(),
            refresh_token: tokens["refresh_token"].as_str().expect("refresh token").to_owned(),
        }
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

/// A video worker running inside the test process.
pub struct TestWorker {
    /// Its name.
    pub name: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: CancellationToken,
    scratch: PathBuf,
}

impl TestWorker {
    /// Kills it mid-work, as `kill -9` would: its ffmpeg dies with it, its entries stay unacked.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Stops it the graceful way.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl TestApp {
    /// Starts a worker on this app's NATS prefix and storage, beating every 250 ms.
    pub async fn spawn_worker(&self, name: &str) -> TestWorker {
        self.spawn_worker_as(name, self.nats.args()).await
    }

    /// [`TestApp::spawn_worker`] connecting with `nats`.
    pub async fn spawn_worker_as(&self, name: &str, nats: NatsArgs) -> TestWorker {
        let scratch = std::env::temp_dir().join(format!("keyframe-test-scratch-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let settings = keyframe_worker::runner::WorkerSettings {
            name: name.to_owned(),
            concurrency: 1,
            heartbeat: Duration::from_millis(250),
            scratch_dir: scratch.clone(),
            analysis: keyframe_media::analysis::AnalysisOptions::default(),
        };
        let storage = keyframe_media::storage::Storage::open(&self.storage).expect("storage");
        let client = nats.connect().await.expect("the worker connects");
        let naming = keyframe_eventlog::streams::Naming::new(nats.nats_prefix.clone());
        let worker = keyframe_worker::runner::Worker::new(client, naming, storage, settings);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        TestWorker {
            name: name.to_owned(),
            task,
            shutdown,
            scratch,
        }
    }

    /// Creates a project of `user`'s; answers its id.
    pub async fn create_project(&self, user: &TestUser, name: &str) -> String {
        let created = self
            .request(
                reqwest::Method::POST,
                "/api/v1/projects",
                Some(&user.access_token),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        created.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Uploads the video at `path` into `project_id`; answers the asset.
    pub async fn upload_video(&self, user: &TestUser, project_id: &str, path: &std::path::Path) -> Value {
        let response = self
            .http
            .post(format!(
                "{}/api/v1/projects/{project_id}/assets?filename=clip.mp4",
                self.base_url
            ))
            .bearer_auth(&user.access_token)
            .header("content-type", "video/mp4")
            .body(std::fs::read(path).expect("video"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        response.json().await.expect("json")
    }

    /// `GET path` as `user`, as JSON.
    pub async fn get_json(&self, user: &TestUser, path: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, path, Some(&user.access_token), None)
            .await;
        response.json().await.expect("json")
    }

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

/// Makes a test video with ffmpeg's lavfi sources into `path`: `args` are the inputs and
/// filters between `ffmpeg -y` and the output options (H.264 + AAC in MP4).
pub fn make_video(path: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ])
        .arg(path)
        .status()
        .expect("ffmpeg runs (CI installs it)");
    assert!(status.success(), "ffmpeg made {}", path.display());
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

/// A background part (relay or projector) started by a test.
pub struct Running {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks it to stop and waits.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }

    /// Kills it where it stands, as a crash would (between a publish and its checkpoint, say).
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Starts a relay from `db` to the test's stream (creating the stream).
pub async fn start_relay(
    db: &TestDatabase,
    nats: &TestNats,
    settings: keyframe_eventlog::relay::RelaySettings,
) -> Running {
    start_relay_woken_by(db, nats, settings, keyframe_eventlog::wake::LocalRelay::default()).await
}

/// [`start_relay`], woken directly by appends through `local` while it leads.
pub async fn start_relay_woken_by(
    db: &TestDatabase,
    nats: &TestNats,
    settings: keyframe_eventlog::relay::RelaySettings,
    local: keyframe_eventlog::wake::LocalRelay,
) -> Running {
    keyframe_eventlog::streams::ensure_events_stream(&nats.jetstream, &nats.naming)
        .await
        .expect("stream");
    let relay = keyframe_eventlog::relay::Relay::new(
        db.pool.clone(),
        db.url.clone(),
        nats.jetstream.clone(),
        nats.naming.clone(),
        settings,
    )
    .woken_by(local);
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    Running {
        stop,
        handle: tokio::spawn(async move { relay.run(token).await }),
    }
}

/// Starts the `project_list` projector on the test's stream.
pub async fn start_project_list_projector(
    db: &TestDatabase,
    nats: &TestNats,
    settings: keyframe_eventlog::projector::ProjectorSettings,
) -> Running {
    keyframe_eventlog::streams::ensure_events_stream(&nats.jetstream, &nats.naming)
        .await
        .expect("stream");
    let projector = keyframe_eventlog::projector::Projector::new(
        db.pool.clone(),
        nats.jetstream.clone(),
        nats.naming.clone(),
        std::sync::Arc::new(keyframe_projections::project_list::ProjectList),
        settings,
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    Running {
        stop,
        handle: tokio::spawn(async move { projector.run(token).await }),
    }
}

/// Every committed event in the database, in commit-safe order. Unfenced: call it once the
/// writes are done (the fence is cluster-wide, so a parallel test's open transaction would
/// otherwise hide events here).
pub async fn all_events(pool: &PgPool) -> Vec<RecordedEvent> {
    keyframe_eventlog::reader::read_all_unfenced(pool)
        .await
        .expect("read the log")
}

/// Asserts that a stream holds each event of `expected` exactly once, and each aggregate's
/// events in sequence order.
pub fn assert_exactly_once_in_order(stream: &[(String, RecordedEvent)], expected: &[RecordedEvent]) {
    use std::collections::{HashMap, HashSet};
    let ids: Vec<&str> = stream.iter().map(|(id, _)| id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no event is in the stream twice");
    let wanted: HashSet<String> = expected.iter().map(RecordedEvent::message_id).collect();
    let got: HashSet<String> = unique.iter().map(|id| (*id).to_owned()).collect();
    assert_eq!(got.len(), wanted.len(), "the stream holds as many events as committed");
    assert!(got == wanted, "the stream holds exactly the committed events");
    let positions: Vec<(u64, i64)> = stream.iter().map(|(_, e)| (e.tx_id, e.global_position)).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "the stream follows the commit-safe order (tx_id, then global_position, numerically)"
    );
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for (id, event) in stream {
        assert_eq!(id, &event.message_id(), "Nats-Msg-Id is <type>:<id>:<sequence>");
        let previous = last
            .insert(
                (event.aggregate_type.clone(), event.aggregate_id.clone()),
                event.sequence,
            )
            .unwrap_or(0);
        assert_eq!(
            event.sequence,
            previous + 1,
            "{} arrives right after its predecessor",
            event.message_id()
        );
    }
}

/// A nats-server of the test's own (for what cannot be done to the shared one: a custom
/// configuration, or being stopped). Killed and its files removed when dropped.
pub struct NatsServerProcess {
    child: std::process::Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// Its port.
    pub port: u16,
    dir: std::path::PathBuf,
}

impl NatsServerProcess {
    /// Starts nats-server with JetStream. `config` is a configuration text in which `{port}` and
    /// `{store}` are replaced; without one, a plain JetStream server is started.
    pub async fn start(config: Option<&str>) -> Self {
        let binary = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("nats-server is installed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(format!("keyframe-nats-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let store = dir.join("jetstream");
        let args: Vec<String> = match config {
            Some(text) => {
                let path = dir.join("nats.conf");
                let text = text
                    .replace("{port}", &port.to_string())
                    .replace("{store}", &store.display().to_string());
                std::fs::write(&path, text).expect("write the configuration");
                vec!["-c".to_owned(), path.display().to_string()]
            }
            None => [
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-sd",
                &store.display().to_string(),
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let child = std::process::Command::new(binary)
            .args(&args)
            .env("KEYFRAME_NATS_PASSWORD", "service-pw")
            .env("WORKER_NATS_PASSWORD", "worker-pw")
            .env("ANALYTICS_NATS_PASSWORD", "analytics-pw")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let url = format!("nats://127.0.0.1:{port}");
        let server = Self { child, url, port, dir };
        wait_for("nats-server to listen", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        server
    }

    /// Kills the server, as an outage would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
