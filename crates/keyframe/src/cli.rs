//! The command line: `serve`, `migrate`, `replay`, `events export`.

use crate::app::{AppConfig, Application, connect_pool_creating_database};
use crate::config::{CommonArgs, ServeArgs, WorkerArgs};
use crate::tools;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    Migrate,
    /// Rebuild read models from the event store.
    Replay(ReplayArgs),
    /// Work with the event log.
    Events {
        /// What to do with it.
        #[command(subcommand)]
        command: EventsCommand,
    },
}

/// `keyframe replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The projection to rebuild (e.g. `project_list`).
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub projection: Option<String>,
    /// Rebuild every projection.
    #[arg(long)]
    pub all: bool,
    /// Events per transaction.
    #[arg(long, default_value_t = 5_000)]
    pub batch_size: i64,
}

/// `keyframe events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write the log as NDJSON, in global-position order.
    Export(ExportArgs),
}

/// `keyframe events export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// First global position to include.
    #[arg(long, conflicts_with = "since")]
    pub from_position: Option<i64>,
    /// Earliest recording time to include (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Recording time to stop before (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// File to write; standard output when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = AppConfig {
                database_url: cli.common.database_url,
                db_max_connections: args.db_max_connections,
                api: args.api_settings()?,
                nats: args.nats.clone(),
                addr: args.addr,
                components: args.run.clone(),
                jobs: args.coordinator_settings(),
                billing: args.settlement_settings(),
            };
            Application::build(config).await?.run_until_stopped().await
        }
        Command::Worker(args) => crate::app::run_worker(&args).await,
        Command::Migrate => {
            let pool = connect_pool_creating_database(&cli.common.database_url, 2).await?;
            keyframe_eventlog::schema::migrate(&pool).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Replay(args) => tools::replay(&cli.common.database_url, args).await,
        Command::Events {
            command: EventsCommand::Export(args),
        } => tools::export(&cli.common.database_url, args).await,
    }
}
