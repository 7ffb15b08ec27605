//! The command line: `serve`, `migrate`, `replay`, `events export`.

use crate::app::{AppConfig, Application};
use crate::config::{CommonArgs, ServeArgs, WorkerArgs};
use crate::database::connect_pool_creating_database;
use crate::tools::{self, ExportArgs, ReplayArgs};
use clap::{Parser, Subcommand};

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

/// `keyframe events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write the log as NDJSON, in global-position order.
    Export(ExportArgs),
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
            keyframe_database::schema::migrate(&pool.into()).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Replay(args) => tools::replay(&cli.common.database_url, args).await,
        Command::Events {
            command: EventsCommand::Export(args),
        } => tools::export(&cli.common.database_url, args).await,
    }
}
