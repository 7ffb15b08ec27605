//! The command line: `serve`, `worker`, `migrate`, `replay`, `events export`, `events import`.

use crate::app::{AppConfig, Application};
use crate::config::{CommonArgs, Component, DataDirArgs, ServeArgs, WorkerArgs};
use crate::database::DatabaseTarget;
use crate::tools::{self, ExportArgs, ImportArgs, ReplayArgs};
use clap::{Parser, Subcommand};

/// The `keyframe` command from its arguments to its exit status: what the binary's `main` runs
/// (and the tests' copy of it, which they start as a process of its own and kill).
pub async fn main() -> std::process::ExitCode {
    keyframe_media::storage::install_tls_provider();
    let cli = Cli::parse();
    crate::telemetry::init(cli.common.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "keyframe failed");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keyframe: the event-sourced backend of an AI video platform.
#[derive(Debug, Parser)]
#[command(name = "keyframe", version)]
pub struct Cli {
    /// Settings every subcommand shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, the relay and the projectors (migrates first).
    Serve(Box<ServeArgs>),
    /// Run the video worker: take queued jobs and run ffmpeg on them.
    Worker(Box<WorkerArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DataDirArgs),
    /// Rebuild read models from the event store.
    Replay(ReplayArgs),
    /// Work with the event log.
    Events {
        /// What to do with it.
        #[command(subcommand)]
        command: EventsCommand,
    },
}

/// `keyframe events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write the log as NDJSON, in global-position order.
    Export(ExportArgs),
    /// Write an export into an empty database, then rebuild the read models from it: how a
    /// deployment moves to another database (the embedded one to Postgres).
    Import(ImportArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let database = DatabaseTarget::from_url(cli.common.database_url.as_deref(), &args.storage.data_dir)?;
            let nats = args.nats.configured().cloned();
            if let (DatabaseTarget::Sqlite(_), Some(_)) = (&database, &nats) {
                anyhow::bail!(
                    "NATS_URL is set but the database is SQLite: a deployment with NATS keeps its log in \
                     Postgres (set DATABASE_URL=postgres://...), or unset NATS_URL to run in one process"
                );
            }
            if nats.is_none() {
                let every_part = [
                    Component::Api,
                    Component::Projectors,
                    Component::Jobs,
                    Component::Billing,
                ];
                anyhow::ensure!(
                    every_part.iter().all(|part| args.run.contains(part)),
                    "without NATS one process runs every part (api, projectors, jobs, billing): leave \
                     KEYFRAME_RUN unset, or set NATS_URL to run the parts in processes of their own"
                );
            }
            announce(&database, nats.as_ref());
            let config = AppConfig {
                database,
                db_max_connections: args.db_max_connections,
                api: args.api_settings()?,
                nats,
                addr: args.addr,
                components: args.run.clone(),
                jobs: args.coordinator_settings(),
                billing: args.settlement_settings(),
                workers: args.in_process_workers(),
            };
            Application::build(config).await?.run_until_stopped().await
        }
        Command::Worker(args) => crate::app::run_worker(&args).await,
        Command::Migrate(data) => {
            let database = DatabaseTarget::from_url(cli.common.database_url.as_deref(), &data.data_dir)?;
            keyframe_database::schema::migrate(&database.open(2).await?).await?;
            eprintln!("migrations applied to {}", database.describe());
            Ok(())
        }
        Command::Replay(args) => {
            let database = DatabaseTarget::from_url(cli.common.database_url.as_deref(), &args.data.data_dir)?;
            tools::replay(&database, args).await
        }
        Command::Events {
            command: EventsCommand::Export(args),
        } => {
            let database = DatabaseTarget::from_url(cli.common.database_url.as_deref(), &args.data.data_dir)?;
            tools::export(&database, args).await
        }
        Command::Events {
            command: EventsCommand::Import(args),
        } => {
            let database = DatabaseTarget::from_url(cli.common.database_url.as_deref(), &args.data.data_dir)?;
            tools::import(&database, args).await
        }
    }
}

/// Says at start which deployment this is, what it guarantees, and how to grow out of it.
fn announce(database: &DatabaseTarget, nats: Option<&crate::config::NatsArgs>) {
    let at = database.describe();
    match (database, nats) {
        (DatabaseTarget::Sqlite(_), _) => tracing::info!(
            database = %at,
            "Keyframe runs embedded: one process on an SQLite file, no Postgres and no NATS. To grow past \
             one machine, export the log (keyframe events export), import it into Postgres (keyframe events \
             import with DATABASE_URL=postgres://...), and set DATABASE_URL and NATS_URL (docs/deployment.md)"
        ),
        (DatabaseTarget::Postgres(_), None) => tracing::info!(
            database = %at,
            "Keyframe runs on Postgres in one process, without NATS. Set NATS_URL to run its parts in \
             several processes and workers on other machines (docs/deployment.md)"
        ),
        (DatabaseTarget::Postgres(_), Some(nats)) => tracing::info!(
            database = %at,
            nats = nats.nats_url.as_deref().unwrap_or_default(),
            "Keyframe runs on Postgres and NATS"
        ),
    }
}
