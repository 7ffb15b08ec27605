//! The load: raw inserts, HTTP commands and queries, the projection-lag probe, the backlog.

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::http::{HeaderValue, Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, SqliteConnection};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// What one timed phase did.
pub struct Phase {
    /// Operations completed.
    pub count: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Each operation's latency.
    pub latencies: Vec<Duration>,
}

impl Phase {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// The service's address, and a convenience client for the few set-up calls.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    authority: String,
}

impl Client {
    /// A client for `base` (`http://host:port`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let authority = base
            .strip_prefix("http://")
            .context("the service's address is not http://host:port")?
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            http: {
                keyframe_media::storage::install_tls_provider();
                reqwest::Client::new()
            },
            base: base.to_owned(),
            authority,
        })
    }

    /// Registers a user (production argon2 parameters) and answers its access token.
    pub async fn register_and_login(&self) -> anyhow::Result<String> {
        Ok(self.register_and_login_with_credentials().await?.0)
    }

    /// Registers a user and answers its access token and the JSON body that logs it in.
    pub async fn register_and_login_with_credentials(&self) -> anyhow::Result<(String, Vec<u8>)> {
        let credentials = json!({"email": format!("bench-{}@example.com", uuid::Uuid::now_v7()), "password": "tangerine orbit quietly sideways"});
        let registered = self
            .http
            .post(format!("{}/api/v1/auth/register", self.base))
            .json(&credentials)
            .send()
            .await?;
        anyhow::ensure!(registered.status().is_success(), "register: {}", registered.status());
        let login: Value = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&credentials)
            .send()
            .await?
            .json()
            .await?;
        let token = login["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access token")?;
        Ok((token, serde_json::to_vec(&credentials)?))
    }

    /// Registers an account with `password` (production argon2 parameters); answers its e-mail.
    pub async fn register(&self, password: &str) -> anyhow::Result<String> {
        let email = format!("bench-{}@example.com", uuid::Uuid::now_v7());
        let registered = self
            .http
            .post(format!("{}/api/v1/auth/register", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(registered.status().is_success(), "register: {}", registered.status());
        Ok(email)
    }

    /// One login: its status and how long the answer took.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<(StatusCode, Duration)> {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        let status = response.status();
        response.bytes().await?;
        Ok((status, started.elapsed()))
    }

    /// Opens `count` connections for the timed loops.
    async fn connect(&self, token: &str, count: usize) -> anyhow::Result<Vec<Connection>> {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            connections.push(Connection::open(&self.authority, token).await?);
        }
        Ok(connections)
    }
}

/// One keep-alive HTTP/1.1 connection carrying one request at a time, as a load tool's worker
/// holds it. The load generator shares the machine's two cores with the service, so the timed
/// loops send through bare hyper rather than reqwest: no pool lookup, URL parsing or header
/// copies per request. The bench process went from 25 % to 18 % of a core while creating
/// projects, CPU the service now has: create project 9,250 -> 10,400 req/s, raw inserts (sqlx,
/// as before) unchanged.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    authority: HeaderValue,
    authorization: HeaderValue,
}

impl Connection {
    async fn open(authority: &str, token: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(authority)
            .await
            .context("connecting to the service")?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority: HeaderValue::from_str(authority)?,
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    /// Sends a request (a JSON body when given) and answers the status and the whole body.
    async fn send(
        &mut self,
        method: Method,
        path: &'static str,
        json: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await.context("the connection closed")?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.authority.clone())
            .header(header::AUTHORIZATION, self.authorization.clone());
        if json.is_some() {
            request = request.header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(Full::new(json.map(Bytes::from).unwrap_or_default()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// `POST /api/v1/projects`; answers the new project's id.
    async fn create_project(&mut self, name: &str) -> anyhow::Result<uuid::Uuid> {
        let body = serde_json::to_vec(&json!({ "name": name }))?;
        let (status, body) = self.send(Method::POST, "/api/v1/projects", Some(body)).await?;
        anyhow::ensure!(status == StatusCode::CREATED, "create: {status}");
        let created: Value = serde_json::from_slice(&body)?;
        created["id"]
            .as_str()
            .context("no id")?
            .parse()
            .context("a malformed id")
    }
}

/// Runs one loop of `operation` per worker state in `workers` for `duration`; each call gets
/// its worker's state and hands it back.
async fn timed<S, F, Fut>(workers: Vec<S>, duration: Duration, operation: F) -> anyhow::Result<Phase>
where
    S: Send + 'static,
    F: Fn(S, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<S>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut running = JoinSet::new();
    for (worker, mut state) in workers.into_iter().enumerate() {
        let operation = operation.clone();
        running.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let began = Instant::now();
                state = operation(state, worker * 1_000_000 + i).await?;
                latencies.push(began.elapsed());
                i += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = running.join_next().await {
        latencies.extend(done??);
    }
    Ok(Phase {
        count: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    })
}

/// Single-row `INSERT` + `COMMIT` on the same Postgres: the floor a command is compared with.
pub async fn raw_inserts(database_url: &str, concurrency: usize, duration: Duration) -> anyhow::Result<Phase> {
    // The service's pool does not ping hot connections before each statement; neither does this.
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .test_before_acquire(false)
        .connect(database_url)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw_inserts (id bigserial PRIMARY KEY, payload json NOT NULL)")
        .execute(&pool)
        .await?;
    timed(vec![pool; concurrency], duration, |pool, i| async move {
        sqlx::query("INSERT INTO bench_raw_inserts (payload) VALUES ($1)")
            .bind(json!({"ProjectCreated": {"name": format!("raw {i}")}}))
            .execute(&pool)
            .await?;
        Ok(pool)
    })
    .await
}

/// `POST /api/v1/projects` at `concurrency`, while one more client measures how long each of
/// its projects takes to appear in `project_list` after its 201 arrived. It looks every
/// millisecond (every 0.5 ms took about 7 % of the commands' throughput), on a connection of
/// its own: through a pool, each look cost two more round trips, the pool's pings before and
/// after.
pub async fn create_projects(
    client: &Client,
    token: &str,
    database_url: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(Phase, Vec<Duration>)> {
    let probe = {
        let mut http = Connection::open(&client.authority, token).await?;
        let mut read_model = ReadModel::open(database_url).await?;
        let deadline = Instant::now() + duration;
        tokio::spawn(async move {
            let mut lags = Vec::new();
            while Instant::now() < deadline {
                let id = http.create_project("lag probe").await?;
                let committed = Instant::now();
                loop {
                    if read_model.shows(id).await? {
                        break;
                    }
                    anyhow::ensure!(
                        committed.elapsed() < Duration::from_secs(30),
                        "project never became visible"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                lags.push(committed.elapsed());
            }
            anyhow::Ok(lags)
        })
    };
    let phase = create_projects_only(client, token, concurrency, duration).await?;
    Ok((phase, probe.await??))
}

/// The service's `project_list`, where the lag probe looks for its projects: a connection of
/// its own to the Postgres database, or to the embedded database's file (read only, beside the
/// running service, as `keyframe events export` reads it).
enum ReadModel {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl ReadModel {
    /// `postgres://...`, or `sqlite://<path>`.
    async fn open(database_url: &str) -> anyhow::Result<Self> {
        Ok(match database_url.strip_prefix("sqlite://") {
            Some(path) => Self::Sqlite(
                SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .connect()
                    .await?,
            ),
            None => Self::Postgres(PgConnection::connect(database_url).await?),
        })
    }

    /// Whether project `id` is in the read model.
    async fn shows(&mut self, id: uuid::Uuid) -> anyhow::Result<bool> {
        const SHOWS: &str = "SELECT EXISTS (SELECT 1 FROM project_list WHERE project_id = $1)";
        Ok(match self {
            Self::Postgres(connection) => sqlx::query_scalar(SHOWS).bind(id).fetch_one(connection).await?,
            Self::Sqlite(connection) => sqlx::query_scalar(SHOWS).bind(id).fetch_one(connection).await?,
        })
    }
}

/// Single-row `INSERT` + `COMMIT` into an SQLite file of its own in `dir`, with the embedded
/// database's settings (WAL, `synchronous = FULL`) and its one writing connection that
/// `concurrency` clients queue for: what an application gets from SQLite without batching, each
/// commit waiting for its own sync. The service's group commit shares a sync among the commands
/// waiting, so its commands may pass 100 % of this. `dir` must be on the disk the service's
/// data would be on (a tmpfs makes every sync free).
pub async fn raw_sqlite_inserts(
    dir: &std::path::Path,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("bench-raw-inserts.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw_inserts (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let phase = timed(vec![pool.clone(); concurrency], duration, |pool, i| async move {
        sqlx::query("INSERT INTO bench_raw_inserts (payload) VALUES ($1)")
            .bind(json!({"ProjectCreated": {"name": format!("raw {i}")}}).to_string())
            .execute(&pool)
            .await?;
        Ok(pool)
    })
    .await;
    pool.close().await;
    phase
}

/// `POST /api/v1/projects` at `concurrency`, nothing else.
pub async fn create_projects_only(
    client: &Client,
    token: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    timed(
        client.connect(token, concurrency).await?,
        duration,
        |mut http, i| async move {
            http.create_project(&format!("bench {i}")).await?;
            Ok(http)
        },
    )
    .await
}

/// Who requests jobs, and the body of their request: one user's analysis of one video.
#[derive(Clone)]
pub struct JobRequester {
    /// The user's access token.
    pub token: String,
    /// `POST /api/v1/jobs` body.
    pub body: Vec<u8>,
}

impl Client {
    /// Registers a user, makes a project and uploads `video` into it: a requester of analyses.
    pub async fn job_requester(&self, video: &std::path::Path) -> anyhow::Result<JobRequester> {
        let token = self.register_and_login().await?;
        let body = self.analysis_of(&token, &json!({"name": "bench jobs"}), video).await?;
        Ok(JobRequester { token, body })
    }

    /// Creates the project `project` as `token`'s, uploads `video` into it, and answers the
    /// `POST /api/v1/jobs` body of its analysis.
    async fn analysis_of(&self, token: &str, project: &Value, video: &std::path::Path) -> anyhow::Result<Vec<u8>> {
        let project: Value = self.post_json(token, "/api/v1/projects", project).await?;
        let project_id = project["id"].as_str().context("no project id")?;
        let asset: Value = self
            .http
            .post(format!("{}/api/v1/projects/{project_id}/assets", self.base))
            .bearer_auth(token)
            .header("content-type", "video/mp4")
            .body(std::fs::read(video)?)
            .send()
            .await?
            .json()
            .await?;
        let asset_id = asset["id"].as_str().context("no asset id")?;
        Ok(serde_json::to_vec(
            &json!({"type": "analyze", "project_id": project_id, "asset_id": asset_id}),
        )?)
    }
}

impl Client {
    /// Makes an organisation of `members` members (its creator among them, the others invited
    /// and accepting from their mails in `mail_dir`), one project of it holding `video`, and
    /// answers one requester per member: their analyses all reserve from the organisation's
    /// one ledger. The organisation's credits come from the free plan's allowance.
    pub async fn organization_requesters(
        &self,
        video: &std::path::Path,
        members: usize,
        mail_dir: &std::path::Path,
    ) -> anyhow::Result<Vec<JobRequester>> {
        let owner = self.register_and_login().await?;
        let organization: Value = self
            .post_json(&owner, "/api/v1/orgs", &json!({"name": "bench team"}))
            .await?;
        let organization_id = organization["id"].as_str().context("no organisation id")?.to_owned();
        let project = json!({"name": "bench team jobs", "organization_id": organization_id});
        let body = self.analysis_of(&owner, &project, video).await?;
        let mut requesters = vec![JobRequester {
            token: owner.clone(),
            body: body.clone(),
        }];
        for _ in 1..members {
            let (token, credentials) = self.register_and_login_with_credentials().await?;
            let email = serde_json::from_slice::<Value>(&credentials)?["email"]
                .as_str()
                .context("no e-mail")?
                .to_owned();
            let verification = mailed_token(mail_dir, &email, "Confirm your e-mail").await?;
            self.post_json(&token, "/api/v1/auth/verify-email", &json!({"token": verification}))
                .await?;
            self.post_json(
                &owner,
                &format!("/api/v1/orgs/{organization_id}/invitations"),
                &json!({"email": email, "role": "member"}),
            )
            .await?;
            let invitation = mailed_token(mail_dir, &email, "invited you to").await?;
            self.post_json(&token, "/api/v1/invitations/accept", &json!({"token": invitation}))
                .await?;
            requesters.push(JobRequester {
                token,
                body: body.clone(),
            });
        }
        Ok(requesters)
    }

    /// `POST path` with `body` as `token`'s; answers the JSON, failing on any error status.
    async fn post_json(&self, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The token of the mail to `email` whose subject holds `subject`, from the `.eml` files
/// Keyframe writes in development (waits up to 10 s for it to be written).
async fn mailed_token(mail_dir: &std::path::Path, email: &str, subject: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for entry in std::fs::read_dir(mail_dir).into_iter().flatten().flatten() {
            let Ok(raw) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            // Quoted-printable: soft line breaks and `=XX` escapes (a token holds no `=`);
            // and long headers folded over lines.
            let text = raw
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
                .replace("\r\n ", " ")
                .replace("\n ", " ");
            let to_them = text
                .lines()
                .any(|line| line.starts_with("To: ") && line.contains(email));
            let about = text
                .lines()
                .any(|line| line.starts_with("Subject: ") && line.contains(subject));
            if to_them
                && about
                && let Some(token) = text.lines().find_map(|line| line.trim().strip_prefix("token: "))
            {
                return Ok(token.trim().to_owned());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no mail '{subject}' to {email} in {}",
            mail_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /api/v1/jobs`, one client per requester (the same requester may appear many times:
/// they then share one credit ledger).
pub async fn request_jobs(client: &Client, requesters: &[JobRequester], duration: Duration) -> anyhow::Result<Phase> {
    let mut workers = Vec::with_capacity(requesters.len());
    for requester in requesters {
        let http = Connection::open(&client.authority, &requester.token).await?;
        workers.push((http, requester.body.clone()));
    }
    timed(workers, duration, |(mut http, body), _| async move {
        let (status, answer) = http.send(Method::POST, "/api/v1/jobs", Some(body.clone())).await?;
        anyhow::ensure!(
            status == StatusCode::ACCEPTED,
            "job request: {status} {}",
            String::from_utf8_lossy(&answer)
        );
        Ok((http, body))
    })
    .await
}

/// `ANALYZE`s the database, as autovacuum does in a running service.
pub async fn analyze(database_url: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new().max_connections(1).connect(database_url).await?;
    sqlx::query("ANALYZE").execute(&pool).await.context("ANALYZE")?;
    pool.close().await;
    Ok(())
}

/// `GET /api/v1/projects` at `concurrency`.
pub async fn list_projects(
    client: &Client,
    token: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    timed(
        client.connect(token, concurrency).await?,
        duration,
        |mut http, _| async move {
            let (status, _) = http.send(Method::GET, "/api/v1/projects", None).await?;
            anyhow::ensure!(status.is_success(), "list: {status}");
            Ok(http)
        },
    )
    .await
}

/// `POST /api/v1/auth/login` with one client per account in `credentials` (each login an
/// argon2id verification and a new session) while `GET /api/v1/projects` runs at
/// `list_concurrency`, both for `duration`: whether password hashing leaves the cores to
/// everything else. One account per client, as logins arrive: the logins of one account take
/// turns with the lockout's check.
pub async fn logins_beside_lists(
    client: &Client,
    token: &str,
    credentials: &[Vec<u8>],
    list_concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(Phase, Phase)> {
    let credentials: std::sync::Arc<[Bytes]> = credentials.iter().map(|body| Bytes::copy_from_slice(body)).collect();
    let logins = timed(
        client.connect(token, credentials.len()).await?,
        duration,
        move |mut http, call| {
            // `timed` numbers a worker's calls from `worker * 1_000_000`.
            let body = credentials[(call / 1_000_000) % credentials.len()].to_vec();
            async move {
                let (status, _) = http.send(Method::POST, "/api/v1/auth/login", Some(body)).await?;
                anyhow::ensure!(status == StatusCode::OK, "login: {status}");
                Ok(http)
            }
        },
    );
    let lists = list_projects(client, token, list_concurrency, duration);
    let (logins, lists) = tokio::join!(logins, lists);
    Ok((logins?, lists?))
}

/// `VACUUM (ANALYZE)` of the whole scratch database: what autovacuum would otherwise do in the
/// middle of the next measurement.
pub async fn vacuum(database_url: &str) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect(database_url).await?;
    sqlx::query("VACUUM (ANALYZE)").execute(&mut connection).await?;
    Ok(())
}

/// Writes `count` `ProjectCreated` events straight into the event store, 20,000 per
/// transaction, shaped exactly as the service writes them.
pub async fn write_backlog(database_url: &str, count: i64) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new().max_connections(2).connect(database_url).await?;
    let owner = uuid::Uuid::now_v7();
    let mut written = 0;
    while written < count {
        let chunk = (count - written).min(20_000);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'Project', id::text, 1, 'ProjectCreated', '1',
                    json_build_object('ProjectCreated', json_build_object('project_id', id, 'owner_id', $2::uuid,
                        'name', 'backlog ' || n, 'description', '', 'created_at', now())),
                    json_build_object('actor', 'system', 'request_id', 'bench', 'correlation_id', 'bench',
                        'causation_id', 'bench')
             FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, $1) n) projects",
        )
        .bind(chunk)
        .bind(owner)
        .execute(&pool)
        .await
        .context("writing the backlog")?;
        written += chunk;
    }
    Ok(())
}
