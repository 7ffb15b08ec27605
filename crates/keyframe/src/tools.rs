//! The operator and auditor tools: `replay`, `events export` and `events import`.

use crate::config::DataDirArgs;
use crate::database::DatabaseTarget;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keyframe_eventlog::export::{ExportRange, export as export_log};
use keyframe_eventlog::projector::replay as replay_projection;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

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
    /// Where the embedded database is.
    #[command(flatten)]
    pub data: DataDirArgs,
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
    /// Where the embedded database is.
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// `keyframe events import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export to read; standard input when absent.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Where the embedded database is.
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// How long an export waits for the transactions running when it began to end.
const EXPORT_WAITS_FOR_RUNNING: std::time::Duration = std::time::Duration::from_secs(30);

/// Rebuilds the chosen projections, with a progress bar and a final rate.
pub async fn replay(target: &DatabaseTarget, args: ReplayArgs) -> anyhow::Result<()> {
    let database = target.open(4).await?;
    keyframe_database::schema::migrate(&database).await?;
    let replayed = replay_into(&database, &args).await;
    database.close().await;
    replayed
}

/// Writes an export into the (empty) database, claims the registered addresses, and rebuilds
/// every read model.
pub async fn import(target: &DatabaseTarget, args: ImportArgs) -> anyhow::Result<()> {
    let database = target.open(4).await?;
    keyframe_database::schema::migrate(&database).await?;
    let imported = async {
        let mut input: Box<dyn std::io::BufRead + Send> = match &args.input {
            Some(path) => Box::new(std::io::BufReader::new(
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
            )),
            None => Box::new(std::io::BufReader::new(std::io::stdin())),
        };
        let bar = ProgressBar::new_spinner();
        bar.set_message("importing");
        let written = keyframe_eventlog::import::import(&database, &mut *input, &mut |done| {
            bar.set_message(format!("imported {done} events"));
        })
        .await?;
        bar.finish_and_clear();
        let addresses = keyframe_app::accounts::reserve_registered_addresses(&database).await?;
        println!(
            "imported {written} events into {} ({addresses} account addresses claimed); rebuilding the read models",
            target.describe()
        );
        let all = ReplayArgs {
            projection: None,
            all: true,
            batch_size: 5_000,
            data: args.data.clone(),
        };
        replay_into(&database, &all).await
    }
    .await;
    database.close().await;
    imported
}

/// Rebuilds the projections `args` chooses in `database`.
async fn replay_into(database: &keyframe_database::Database, args: &ReplayArgs) -> anyhow::Result<()> {
    let all = keyframe_projections::all();
    let chosen: Vec<_> = match &args.projection {
        Some(name) => {
            let found: Vec<_> = all.into_iter().filter(|p| p.name() == name).collect();
            if found.is_empty() {
                let known = keyframe_projections::names();
                anyhow::bail!("no projection named {name}; known: {}", known.join(", "));
            }
            found
        }
        None => all,
    };
    for projection in chosen {
        let total = keyframe_eventlog::reader::count_events(database).await?;
        let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
                .context("progress template")?
                .progress_chars("=> "),
        );
        bar.set_message(projection.name());
        let report = replay_projection(database, projection.as_ref(), args.batch_size, &mut |done| {
            bar.set_position(done)
        })
        .await
        .with_context(|| format!("replaying {}", projection.name()))?;
        bar.finish_and_clear();
        println!(
            "replayed {}: {} events in {:.2} s ({:.0} events/s)",
            projection.name(),
            report.events,
            report.elapsed.as_secs_f64(),
            report.events_per_second()
        );
    }
    Ok(())
}

/// Writes the log as NDJSON to the chosen file or standard output.
pub async fn export(target: &DatabaseTarget, args: ExportArgs) -> anyhow::Result<()> {
    let database = target.open_to_read(2).await?;
    let range = ExportRange {
        from_position: args.from_position,
        since: args.since,
        until: args.until,
    };
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout())),
    };
    let written = export_log(&database, range, EXPORT_WAITS_FOR_RUNNING, &mut out).await?;
    drop(out);
    eprintln!("exported {written} events");
    Ok(())
}
