//! The relay and the projectors on a Tokio runtime of their own, on a thread of their own.
//!
//! On the API's runtime they were a few tasks among every request in flight: under a burst of
//! commands each of their steps queued behind the requests, and the read models fell behind
//! (bench, 32 clients creating projects on 2 cores: projection lag p50 25 ms, against 10 ms with
//! the same work on a runtime of its own, at the same command rate). A thread of their own gets
//! its turn from the operating system's scheduler instead. Being on another runtime, they also
//! get their own Postgres pool and NATS connection: I/O objects belong to the runtime that made
//! them. (An SQLite database is shared: its connections run on threads of their own, and one
//! process holds its one writing connection.)
//!
//! Without NATS there is no relay, and the projectors tail the log ([`TailFeed`]).

use crate::config::NatsArgs;
use crate::database::connect_pool;
use anyhow::Context as _;
use async_nats::jetstream;
use keyframe_database::Database;
use keyframe_eventlog::feed::jetstream::{FeedSettings, JetStreamFeed};
use keyframe_eventlog::feed::tail::{TailFeed, TailSettings};
use keyframe_eventlog::projector::{Projector, ProjectorSettings};
use keyframe_eventlog::relay::{Relay, RelaySettings};
use keyframe_eventlog::streams::Naming;
use keyframe_eventlog::wake::LocalRelay;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Postgres connections the pipeline's pool may open: the relay's reads and listener, the
/// projector runtime's reads of the event store, and headroom. The relay's and the projector
/// runtime's leases have a connection each of their own.
const PIPELINE_CONNECTIONS: u32 = 4;

/// What to run.
pub struct PipelineConfig {
    /// The process's database: the pipeline's own on SQLite.
    pub database: Database,
    /// On Postgres, where to open the pipeline's own pool.
    pub postgres_url: Option<String>,
    /// NATS connection and prefix; `None`: no relay, and the projectors tail the log.
    pub nats: Option<NatsArgs>,
    /// Run the relay.
    pub relay: bool,
    /// Run the projectors.
    pub projectors: bool,
    /// How the process's appends wake its relay.
    pub local_relay: LocalRelay,
}

/// Starts the pipeline's thread and waits until it has connected. The returned receiver
/// answers when the pipeline has stopped: after `shutdown`, or on its own with the error.
/// Cancelling `shutdown` is the only way to stop it: the caller must do so on every path.
pub async fn start(
    config: PipelineConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<oneshot::Receiver<anyhow::Result<()>>> {
    let (connected_tx, connected_rx) = oneshot::channel::<anyhow::Result<()>>();
    let (stopped_tx, stopped_rx) = oneshot::channel();
    // The runtime is built and dropped on its own thread: dropping one inside async code panics.
    std::thread::Builder::new()
        .name("keyframe-pipeline".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let outcome = match runtime {
                Ok(runtime) => runtime.block_on(run(config, shutdown, connected_tx)),
                Err(error) => {
                    let _ =
                        connected_tx.send(Err(anyhow::Error::new(error).context("building the pipeline's runtime")));
                    Ok(())
                }
            };
            let _ = stopped_tx.send(outcome);
        })
        .context("starting the pipeline's thread")?;
    match connected_rx.await {
        Ok(Ok(())) => Ok(stopped_rx),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(anyhow::anyhow!("the pipeline's thread died while connecting")),
    }
}

async fn run(
    config: PipelineConfig,
    shutdown: CancellationToken,
    connected: oneshot::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let connections = async {
        let database = match &config.postgres_url {
            Some(url) => Database::from(connect_pool(url, PIPELINE_CONNECTIONS).await?),
            None => config.database.clone(),
        };
        let jetstream = match &config.nats {
            Some(nats) => Some(jetstream::new(nats.connect().await.context("connecting to NATS")?)),
            None => None,
        };
        anyhow::Ok((database, jetstream))
    }
    .await;
    let (database, jetstream) = match connections {
        Ok(connections) => {
            let _ = connected.send(Ok(()));
            connections
        }
        Err(error) => {
            let _ = connected.send(Err(error));
            return Ok(());
        }
    };
    let mut parts = JoinSet::new();
    if let (true, Some(jetstream), Some(nats), Some(pool), Some(url)) = (
        config.relay,
        &jetstream,
        &config.nats,
        database.postgres(),
        &config.postgres_url,
    ) {
        let relay = Relay::new(
            pool.clone(),
            url.clone(),
            jetstream.clone(),
            Naming::new(nats.nats_prefix.clone()),
            RelaySettings::default(),
        )
        .woken_by(config.local_relay.clone());
        parts.spawn(relay.run(shutdown.clone()));
    }
    if config.projectors {
        let projections = keyframe_projections::all();
        match (&jetstream, &config.nats) {
            (Some(jetstream), Some(nats)) => {
                let naming = Naming::new(nats.nats_prefix.clone());
                let names: Vec<&str> = projections.iter().map(|projection| projection.name()).collect();
                keyframe_eventlog::streams::delete_retired_consumers(jetstream, &naming, &names).await;
                let feed = JetStreamFeed::for_projections(jetstream.clone(), naming, FeedSettings::default());
                let projector = Projector::new(database.clone(), feed, projections, ProjectorSettings::default());
                parts.spawn(projector.run(shutdown.clone()));
            }
            _ => {
                let feed = TailFeed::new(database.clone(), &config.local_relay, TailSettings::default());
                let projector = Projector::new(database.clone(), feed, projections, ProjectorSettings::default());
                parts.spawn(projector.run(shutdown.clone()));
            }
        }
    }
    // Each part resumes after its own errors and returns only when asked to stop.
    while let Some(finished) = parts.join_next().await {
        finished.context("a pipeline part panicked")?;
    }
    if config.postgres_url.is_some() {
        database.close().await;
    }
    Ok(())
}
