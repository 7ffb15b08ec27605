//! The load: raw inserts, HTTP commands and queries, the projection-lag probe, the backlog.

use anyhow::Context as _;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection};
use std::time::{Duration, Instant};
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

/// An HTTP client with a connection per concurrent worker.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client for `base`.
    pub fn new(base: &str, concurrency: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency + 4)
            .build()?;
        Ok(Self {
            http,
            base: base.to_owned(),
        })
    }

    /// Registers a user (production argon2 parameters) and answers its access token.
    pub async fn register_and_login(&self) -> anyhow::Result<String> {
        let credentials = json!({"email": format!("bench-{}@example.com", uuid::Uuid::now_v7()), "password": "a bench passphrase, long enough"});
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
        login["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access token")
    }

    async fn create_project(&self, token: &str, name: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/api/v1/projects", self.base))
            .bearer_auth(token)
            .json(&json!({"name": name}))
            .send()
            .await?;
        anyhow::ensure!(response.status().as_u16() == 201, "create: {}", response.status());
        let body: Value = response.json().await?;
        body["id"].as_str().map(str::to_owned).context("no id")
    }
}

/// Runs `concurrency` loops of `operation` for `duration`.
async fn timed<F, Fut>(concurrency: usize, duration: Duration, operation: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let operation = operation.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let began = Instant::now();
                operation(worker * 1_000_000 + i).await?;
                latencies.push(began.elapsed());
                i += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
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
    let phase = timed(concurrency, duration, move |i| {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO bench_raw_inserts (payload) VALUES ($1)")
                .bind(json!({"ProjectCreated": {"name": format!("raw {i}")}}))
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(phase)
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
        let client = client.clone();
        let token = token.to_owned();
        let mut connection = PgConnection::connect(database_url).await?;
        let deadline = Instant::now() + duration;
        tokio::spawn(async move {
            let mut lags = Vec::new();
            while Instant::now() < deadline {
                let id: uuid::Uuid = client.create_project(&token, "lag probe").await?.parse()?;
                let committed = Instant::now();
                loop {
                    let visible: bool =
                        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM project_list WHERE project_id = $1)")
                            .bind(id)
                            .fetch_one(&mut connection)
                            .await?;
                    if visible {
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

/// `POST /api/v1/projects` at `concurrency`, nothing else.
pub async fn create_projects_only(
    client: &Client,
    token: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let client = client.clone();
    let token = token.to_owned();
    timed(concurrency, duration, move |i| {
        let client = client.clone();
        let token = token.clone();
        async move {
            client.create_project(&token, &format!("bench {i}")).await?;
            Ok(())
        }
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
    let client = client.clone();
    let token = token.to_owned();
    timed(concurrency, duration, move |_| {
        let client = client.clone();
        let token = token.clone();
        async move {
            let response = client
                .http
                .get(format!("{}/api/v1/projects", client.base))
                .bearer_auth(&token)
                .send()
                .await?;
            anyhow::ensure!(response.status().is_success(), "list: {}", response.status());
            response.bytes().await?;
            Ok(())
        }
    })
    .await
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
