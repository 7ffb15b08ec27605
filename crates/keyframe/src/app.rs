//! One Keyframe process: the API, the relay, the projectors, the jobs coordinator and the
//! billing settlement, as configured, stopped together. The relay and projectors run on a runtime
//! of their own ([`crate::pipeline`]).
//!
//! With NATS, the parts may run in as many processes as wanted, over one Postgres database. Without
//! it, one process runs them all over its database (SQLite or Postgres): the read models and the
//! progress streams follow the log in the process instead of through JetStream.

use crate::config::{Component, NatsArgs};
use crate::database::DatabaseTarget;
use crate::pipeline::{self, PipelineConfig};
use anyhow::Context as _;
use async_nats::jetstream;
use keyframe_api::settings::ApiSettings;
use keyframe_api::state::AppState;
use keyframe_app::buses::Buses;
use keyframe_billing::allowance::Allowances;
use keyframe_billing::settlement::{Settlement, SettlementSettings};
use keyframe_database::Database;
use keyframe_eventlog::streams::{Naming, ensure_events_stream};
use keyframe_eventlog::wake::LocalRelay;
use keyframe_worker::coordinator::{Coordinator, CoordinatorSettings, JobDesk, ensure_worker_consumer};
use keyframe_worker::local::{LocalJobQueue, LocalService};
use keyframe_worker::runner::{Worker, WorkerSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a process needs to start.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The database.
    pub database: DatabaseTarget,
    /// Connections to it at most (readers, on SQLite).
    pub db_max_connections: u32,
    /// NATS connection and prefix; `None` runs without NATS, in this one process.
    pub nats: Option<NatsArgs>,
    /// API listen address (port 0 picks a free one).
    pub addr: SocketAddr,
    /// Which parts to run.
    pub components: Vec<Component>,
    /// API settings.
    pub api: ApiSettings,
    /// How the `jobs` component treats workers.
    pub jobs: CoordinatorSettings,
    /// How the `billing` component settles.
    pub billing: SettlementSettings,
    /// Without NATS, the video workers the `jobs` component runs in this process (`None`:
    /// none; jobs then wait). With NATS, workers are processes of their own (`keyframe worker`).
    pub workers: Option<WorkerSettings>,
}

/// A running process.
pub struct Application {
    local_addr: Option<SocketAddr>,
    api: Option<AppState>,
    database: Database,
    jobs: Option<InProcessJobs>,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Application {
    /// Connects, applies pending migrations, creates or updates the stream, and starts the
    /// configured parts.
    pub async fn build(config: AppConfig) -> anyhow::Result<Self> {
        // Before anything counts: the metrics of every part of the process go to it.
        keyframe_api::prometheus::recorder();
        let database = config.database.open(config.db_max_connections).await?;
        keyframe_database::schema::migrate(&database)
            .await
            .context("applying migrations")?;
        if config.nats.is_none() {
            refuse_a_database_served_with_nats(&database).await?;
        }
        let messaging = match &config.nats {
            Some(args) => {
                let nats = args.connect().await.context("connecting to NATS")?;
                let jetstream = jetstream::new(nats.clone());
                let naming = Naming::new(args.nats_prefix.clone());
                ensure_events_stream(&jetstream, &naming)
                    .await
                    .map_err(|e| anyhow::anyhow!("creating the events stream: {e}"))?;
                Some((nats, jetstream, naming))
            }
            None => None,
        };

        let shutdown = CancellationToken::new();
        // Should the rest of `build` fail (or its future be dropped), this stops what it started:
        // the pipeline runs on a thread of its own that only the token can stop.
        let stop_on_failure = shutdown.clone().drop_guard();
        let mut tasks = JoinSet::new();
        // This process's relay, if it runs one: the API's appends wake it without a round
        // trip through Postgres.
        let local_relay = if messaging.is_some() {
            LocalRelay::default()
        } else {
            LocalRelay::without_relay()
        };
        // Without NATS there is nothing to relay to: the process's readers follow the log.
        let relay = config.components.contains(&Component::Relay) && config.nats.is_some();
        let projectors = config.components.contains(&Component::Projectors);
        if relay || projectors {
            let pipeline = PipelineConfig {
                database: database.clone(),
                postgres_url: match &config.database {
                    DatabaseTarget::Postgres(url) => Some(url.clone()),
                    DatabaseTarget::Sqlite(_) => None,
                },
                nats: config.nats.clone(),
                relay,
                projectors,
                local_relay: local_relay.clone(),
            };
            let stopped = pipeline::start(pipeline, shutdown.clone()).await?;
            tasks.spawn(async move { stopped.await.context("the pipeline's thread died")? });
        }
        // The buses, built once: the API, the jobs coordinator and the settlement share them,
        // so their commands on one aggregate take turns (and share its cache) instead of
        // colliding, and their appends share commits.
        let buses = Buses::new(database.clone(), config.api.append_writers, local_relay.clone());
        let mut in_process_jobs = None;
        if config.components.contains(&Component::Jobs) {
            match &messaging {
                Some((nats, jetstream, naming)) => {
                    ensure_worker_consumer(jetstream, naming, config.jobs.worker_ack_wait).await?;
                    let coordinator = Coordinator::new(buses.jobs.clone(), nats.clone(), naming, config.jobs);
                    tasks.spawn(coordinator.run(shutdown.clone()));
                }
                None => {
                    let queue = LocalJobQueue::new(config.jobs.worker_ack_wait);
                    tasks.spawn(
                        queue
                            .clone()
                            .feed(database.clone(), local_relay.clone(), shutdown.clone()),
                    );
                    let jobs = InProcessJobs {
                        queue,
                        desk: Arc::new(JobDesk::new(buses.jobs.clone(), config.jobs)),
                    };
                    if let Some(settings) = config.workers.clone() {
                        let storage = keyframe_media::storage::Storage::open(&config.api.storage)
                            .context("opening the storage for the workers")?;
                        let settings = in_process_worker_settings(settings).await?;
                        tasks.spawn(jobs.worker(storage, settings).run(shutdown.clone()));
                    }
                    in_process_jobs = Some(jobs);
                }
            }
        }
        let api_state = if config.components.contains(&Component::Api) {
            let listener = tokio::net::TcpListener::bind(config.addr)
                .await
                .with_context(|| format!("binding {}", config.addr))?;
            let first_admin = config.api.first_admin.clone();
            let nats = messaging.as_ref().map(|(nats, _, _)| nats.clone());
            let state = AppState::new(database.clone(), nats, local_relay.clone(), config.api, buses.clone())
                .context("assembling the API")?;
            if let Some((email, password)) = first_admin {
                state.app.ensure_first_admin(&email, &password).await?;
            }
            Some((listener, state))
        } else {
            None
        };
        if config.components.contains(&Component::Billing) {
            let allowances = Allowances::new(
                database.clone(),
                buses.ledgers.clone(),
                buses.subscriptions.clone(),
                config.billing.free_plan.clone(),
            )
            .map(Arc::new);
            let mut settlement = match &messaging {
                Some((_, jetstream, naming)) => Settlement::new(
                    buses.jobs,
                    buses.ledgers,
                    jetstream.clone(),
                    naming.clone(),
                    config.billing,
                ),
                None => Settlement::over_log(
                    buses.jobs,
                    buses.ledgers,
                    database.clone(),
                    local_relay.clone(),
                    config.billing,
                ),
            };
            if let Some(allowances) = allowances {
                settlement = settlement.with_allowances(allowances.clone());
                tasks.spawn(allowances.run(shutdown.clone()));
            }
            tasks.spawn(settlement.run(shutdown.clone()));
        }
        let mut local_addr = None;
        let mut api = None;
        if let Some((listener, state)) = api_state {
            local_addr = Some(listener.local_addr()?);
            api = Some(state.clone());
            if let Some(metrics_addr) = state.settings.metrics_addr {
                let listener = tokio::net::TcpListener::bind(metrics_addr)
                    .await
                    .with_context(|| format!("binding {metrics_addr} for /metrics"))?;
                let metrics = keyframe_api::metrics_router(state.clone());
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    axum::serve(listener, metrics)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                        .context("serving /metrics")
                });
                tracing::info!(addr = %metrics_addr, "metrics listening");
            }
            let app = keyframe_api::router(state).into_make_service_with_connect_info::<SocketAddr>();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                    .context("serving HTTP")
            });
            tracing::info!(addr = %listener_addr(local_addr), "API listening");
        }
        stop_on_failure.disarm();
        Ok(Self {
            local_addr,
            api,
            database,
            jobs: in_process_jobs,
            shutdown,
            tasks,
        })
    }

    /// Without NATS, the process's job queue and the service its workers ask: for starting
    /// workers of one's own beside (or instead of) those `AppConfig::workers` asks for.
    pub fn in_process_jobs(&self) -> Option<&InProcessJobs> {
        self.jobs.as_ref()
    }

    /// Where the API listens, when it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The API's state, when the API runs: what embedders and tests may inspect (the
    /// password verifications the lockout bounds, say).
    pub fn api(&self) -> Option<&AppState> {
        self.api.as_ref()
    }

    /// The process's database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Runs until Ctrl-C or SIGTERM, or until a part stops by itself, then stops the rest.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let outcome = tokio::select! {
            () = shutdown_signal() => Ok(()),
            finished = self.tasks.join_next() => match finished {
                Some(Ok(Err(error))) => Err(error),
                Some(Err(error)) => Err(error.into()),
                _ => Ok(()),
            },
        };
        self.stop().await;
        outcome
    }

    /// Stops every part at once without waiting (for `Drop` in tests and emergencies). Dropping
    /// the application does the same.
    pub fn abort(&mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
    }

    /// Stops every part and waits for them, at most a few seconds.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
        self.database.close().await;
    }
}

impl Drop for Application {
    fn drop(&mut self) {
        // The relay and projectors run on their own thread, which aborting tasks cannot reach.
        self.shutdown.cancel();
    }
}

/// The jobs of a process without NATS: the queue its workers take from and the desk they ask.
#[derive(Clone)]
pub struct InProcessJobs {
    queue: LocalJobQueue,
    desk: Arc<JobDesk>,
}

impl InProcessJobs {
    /// A worker taking from this queue, reading videos from `storage`.
    pub fn worker(&self, storage: keyframe_media::storage::Storage, settings: WorkerSettings) -> Worker {
        Worker::with(
            Arc::new(self.queue.clone()),
            Arc::new(LocalService(self.desk.clone())),
            storage,
            settings,
        )
    }
}

/// Refuses to run a Postgres database without NATS when it was served with NATS (its relay kept
/// a checkpoint): an upgrade that lost `NATS_URL` would otherwise stop relaying to the
/// analysts, leave the workers elsewhere without jobs, and run the jobs here instead.
async fn refuse_a_database_served_with_nats(database: &Database) -> anyhow::Result<()> {
    let Some(pool) = database.postgres() else {
        return Ok(());
    };
    let relayed: i64 = sqlx::query_scalar("SELECT count(*) FROM relay_checkpoints")
        .fetch_one(pool)
        .await
        .context("reading the relay's checkpoint")?;
    anyhow::ensure!(
        relayed == 0,
        "this database has been served with NATS (its relay kept a checkpoint), but NATS_URL is not set: \
         set it as before; to run this database in one process without NATS from now on, delete the \
         relay's checkpoint first (DELETE FROM relay_checkpoints)"
    );
    Ok(())
}

/// The in-process workers' settings, their scratch directory made. Without ffmpeg and ffprobe
/// the process still serves everything else: it says so once, uploads are refused with a 503
/// that says why, and each video job fails with that reason for its owner to read.
async fn in_process_worker_settings(mut settings: WorkerSettings) -> anyhow::Result<WorkerSettings> {
    std::fs::create_dir_all(&settings.scratch_dir)
        .with_context(|| format!("creating {}", settings.scratch_dir.display()))?;
    if settings.unable.is_none() && !keyframe_media::probe::tools_available().await {
        tracing::warn!(
            "ffmpeg and ffprobe are not on the PATH: uploads are refused (503 video_tools_unavailable) \
             and video jobs fail until they are installed (Debian and Ubuntu: apt-get install ffmpeg)"
        );
        settings.unable = Some(
            "this Keyframe has no ffmpeg to analyse videos with: ask its operator to install ffmpeg and ffprobe"
                .to_owned(),
        );
    }
    Ok(settings)
}

fn listener_addr(addr: Option<SocketAddr>) -> String {
    addr.map(|addr| addr.to_string()).unwrap_or_default()
}

/// `keyframe worker`: runs until Ctrl-C or SIGTERM. Needs only NATS and the storage, never
/// Postgres.
pub async fn run_worker(args: &crate::config::WorkerArgs) -> anyhow::Result<()> {
    let settings = args.settings();
    std::fs::create_dir_all(&settings.scratch_dir)
        .with_context(|| format!("creating {}", settings.scratch_dir.display()))?;
    if !keyframe_media::probe::tools_available().await {
        anyhow::bail!("ffmpeg and ffprobe must be installed and on the PATH");
    }
    let storage = keyframe_media::storage::Storage::open(&args.storage.storage())?;
    let nats = args.nats.connect().await.context("connecting to NATS")?;
    let worker =
        keyframe_worker::runner::Worker::new(nats, Naming::new(args.nats.nats_prefix.clone()), storage, settings);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    worker.run(shutdown).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
