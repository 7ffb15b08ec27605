//! A worker: takes queued jobs from the queue, runs ffmpeg on them, and reports to the service.
//! `keyframe worker` runs one over NATS; a process without NATS runs its own in memory (see
//! [`crate::transport`]).
//!
//! While an attempt runs, a heartbeat both tells the queue the work goes on (an in-progress
//! ack, so the entry is not handed to another worker) and reports progress to the service,
//! whose answer says whether to go on: a cancelled job's ffmpeg is killed at the next beat.

use crate::protocol::{
    FailedRequest, OutcomeReply, ProgressReply, ProgressRequest, StartReply, StartRequest, SucceededRequest, WorkOrder,
    kind,
};
use crate::transport::{JobQueue, JobService, NatsQueue, NatsService, QueueEntry};
use anyhow::Context as _;
use keyframe_domain::job::{ClipParameters, JobEvent, JobType};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::media::{Artifact, Span};
use keyframe_eventlog::streams::Naming;
use keyframe_media::analysis::{self, AnalysisOptions};
use keyframe_media::clips;
use keyframe_media::ffmpeg::MediaError;
use keyframe_media::probe::{self, ProbeError};
use keyframe_media::storage::Storage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Its name in the job's history.
    pub name: String,
    /// Jobs run at once (each ffmpeg uses several cores already).
    pub concurrency: usize,
    /// How often a running attempt beats: in-progress ack and progress report. A cancellation
    /// stops ffmpeg within about one beat.
    pub heartbeat: Duration,
    /// Where attempts get their scratch directories.
    pub scratch_dir: PathBuf,
    /// Detector tuning.
    pub analysis: AnalysisOptions,
    /// Why attempts cannot run here, if they cannot (ffmpeg or ffprobe missing): every attempt
    /// then fails with this reason, which the job's owner reads, instead of the job waiting for
    /// a worker that never comes.
    pub unable: Option<String>,
}

/// Delay before an entry the worker could not start is offered again.
const RETRY_LATER: Duration = Duration::from_secs(2);
/// How long a worker keeps trying to get its outcome recorded before it lets the entry go.
const OUTCOME_PATIENCE: Duration = Duration::from_secs(120);

/// A worker.
#[derive(Clone)]
pub struct Worker(Arc<Inner>);

struct Inner {
    queue: Arc<dyn JobQueue>,
    service: Arc<dyn JobService>,
    storage: Storage,
    settings: WorkerSettings,
}

/// Why an attempt ended without a result.
enum AttemptError {
    /// Stopped on the service's word or at shutdown: nothing to report.
    Stopped,
    /// Failed; the reason is for the job's owner.
    Failed(String),
}

impl From<MediaError> for AttemptError {
    fn from(error: MediaError) -> Self {
        match error {
            MediaError::Cancelled => Self::Stopped,
            other => Self::Failed(other.to_string()),
        }
    }
}

impl Worker {
    /// A worker on `client` (the worker NATS user suffices), reading videos from `storage`.
    pub fn new(client: async_nats::Client, naming: Naming, storage: Storage, settings: WorkerSettings) -> Self {
        let service = Arc::new(NatsService::new(client.clone(), &naming));
        Self::with(Arc::new(NatsQueue::new(client, naming)), service, storage, settings)
    }

    /// A worker taking from `queue` and asking `service`, reading videos from `storage`.
    pub fn with(
        queue: Arc<dyn JobQueue>,
        service: Arc<dyn JobService>,
        storage: Storage,
        settings: WorkerSettings,
    ) -> Self {
        Self(Arc::new(Inner {
            queue,
            service,
            storage,
            settings,
        }))
    }

    /// Takes and runs jobs until `shutdown`. Attempts still running then are stopped and their
    /// entries given back at once, so another worker takes them without waiting.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Some(ack_wait) = self.0.queue.ready(&shutdown).await? else {
            return Ok(());
        };
        // Beat well within the queue's ack wait, whatever was configured here: a beat that
        // came too late would hand a live attempt to another worker.
        let beat_every = self
            .0
            .settings
            .heartbeat
            .min(ack_wait / 3)
            .max(Duration::from_millis(50));
        tracing::info!(worker = %self.0.settings.name, ?beat_every, "worker taking jobs");
        let slots = Arc::new(Semaphore::new(self.0.settings.concurrency.max(1)));
        let mut running = tokio::task::JoinSet::new();
        loop {
            let slot = tokio::select! {
                () = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.context("worker slots closed")?,
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = self.0.queue.take(Duration::from_secs(5)) => next,
            };
            match next {
                Ok(Some(entry)) => {
                    let worker = self.clone();
                    let stop = shutdown.child_token();
                    running.spawn(async move {
                        worker.take(Arc::from(entry), &stop, beat_every).await;
                        drop(slot);
                    });
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "taking a job failed; trying again");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
        Ok(())
    }

    /// Handles one delivered queue entry, acknowledging it once its outcome is settled.
    async fn take(&self, message: Arc<dyn QueueEntry>, stop: &CancellationToken, beat_every: Duration) {
        let entry = serde_json::from_slice::<RecordedEvent>(message.payload())
            .ok()
            .and_then(|event| {
                let queued = serde_json::from_str::<JobEvent>(event.payload.get()).ok()?;
                Some((event.aggregate_id, queued))
            });
        let Some((job_id, JobEvent::JobQueued { ticket, not_before, .. })) = entry else {
            tracing::error!(entry = message.entry_id(), "not a JobQueued event; dropping it");
            message.term().await;
            return;
        };
        if let Some(delay) = not_before.and_then(|at| (at - keyframe_domain::clock::now()).to_std().ok()) {
            // An automatic retry's backoff: offered again when it is due.
            message.nak(Some(delay)).await;
            return;
        }
        // The same worker asking again for the same queue entry (its request timed out, the
        // entry came back to it) is recognised as the same claim; another worker's is not.
        let claim = format!("{}/{}", self.0.settings.name, message.entry_id());
        let start = StartRequest {
            ticket,
            claim,
            worker: self.0.settings.name.clone(),
        };
        let order = match self.ask::<_, StartReply>(&job_id, kind::STARTED, &start).await {
            Ok(StartReply::Run(order)) => order,
            Ok(StartReply::Skip { reason }) => {
                tracing::info!(job_id, reason, "not running this queue entry");
                message.ack().await;
                return;
            }
            Ok(StartReply::Unavailable { reason }) | Err(reason) => {
                tracing::warn!(job_id, reason, "could not start; the entry comes back later");
                message.nak(Some(RETRY_LATER)).await;
                return;
            }
        };
        tracing::info!(
            job_id,
            attempt = order.attempt,
            job_type = order.job_type.as_str(),
            "attempt started"
        );
        let cancel = stop.child_token();
        let progress = Arc::new(Progress::default());
        // Aborted when this attempt ends, however it ends: a worker killed mid-job must stop
        // beating too, or the entry would never go to another worker.
        let heartbeat = AbortOnDrop(tokio::spawn(self.clone().beat(
            job_id.clone(),
            order.attempt,
            message.clone(),
            progress.clone(),
            cancel.clone(),
            beat_every,
        )));
        let outcome = self.attempt(&job_id, &order, &cancel, &progress).await;
        drop(heartbeat);
        match outcome {
            Ok((result, artifacts)) => {
                let report = SucceededRequest {
                    attempt: order.attempt,
                    result,
                    artifacts: artifacts.clone(),
                };
                match self.report(&job_id, kind::SUCCEEDED, &report, &message).await {
                    Reported::Recorded => {}
                    Reported::Refused => {
                        // Refused for good: what this attempt stored belongs to nobody.
                        for artifact in &artifacts {
                            let _ = self.0.storage.delete(&artifact.storage_key).await;
                        }
                    }
                    // Handed back unsettled: the entry comes again and the outcome with it.
                    Reported::HandedBack => return,
                }
                tracing::info!(job_id, attempt = order.attempt, "attempt succeeded");
            }
            Err(AttemptError::Failed(reason)) => {
                tracing::warn!(job_id, attempt = order.attempt, reason, "attempt failed");
                let report = FailedRequest {
                    attempt: order.attempt,
                    reason,
                };
                if self.report(&job_id, kind::FAILED, &report, &message).await == Reported::HandedBack {
                    return;
                }
            }
            Err(AttemptError::Stopped) if stop.is_cancelled() => {
                // Shutting down: give the entry back for another worker at once.
                message.nak(None).await;
                return;
            }
            Err(AttemptError::Stopped) => tracing::info!(job_id, attempt = order.attempt, "attempt stopped"),
        }
        message.ack().await;
    }

    /// Beats until aborted: keeps the entry from going to another worker and asks the service
    /// whether to go on.
    async fn beat(
        self,
        job_id: String,
        attempt: u32,
        message: Arc<dyn QueueEntry>,
        progress: Arc<Progress>,
        cancel: CancellationToken,
        every: Duration,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            message.in_progress().await;
            let report = ProgressRequest {
                attempt,
                percent: progress.percent.load(Ordering::Relaxed),
                stage: progress.stage(),
            };
            // A slow answer must not delay the next in-progress ack: wait at most one beat.
            let answer =
                tokio::time::timeout(every, self.ask::<_, ProgressReply>(&job_id, kind::PROGRESS, &report)).await;
            if let Ok(Ok(ProgressReply::Stop { reason })) = answer {
                tracing::info!(job_id, attempt, reason, "told to stop");
                cancel.cancel();
                return;
            }
        }
    }

    /// Reports an outcome until the service records or refuses it, keeping the entry alive
    /// meanwhile. If the service stays away too long the entry is handed back, unsettled, to
    /// come again.
    async fn report<R: Serialize>(
        &self,
        job_id: &str,
        request_kind: &str,
        request: &R,
        message: &Arc<dyn QueueEntry>,
    ) -> Reported {
        let deadline = tokio::time::Instant::now() + OUTCOME_PATIENCE;
        loop {
            match self.ask::<_, OutcomeReply>(job_id, request_kind, request).await {
                Ok(OutcomeReply::Recorded) => return Reported::Recorded,
                Ok(OutcomeReply::Refused { reason }) => {
                    tracing::info!(job_id, reason, "outcome refused");
                    return Reported::Refused;
                }
                Ok(OutcomeReply::Unavailable { reason }) | Err(reason) => {
                    tracing::warn!(job_id, reason, "outcome not recorded yet; asking again");
                }
            }
            if tokio::time::Instant::now() > deadline {
                message.nak(Some(RETRY_LATER)).await;
                return Reported::HandedBack;
            }
            message.in_progress().await;
            tokio::time::sleep(RETRY_LATER).await;
        }
    }

    async fn ask<R: Serialize, A: DeserializeOwned>(
        &self,
        job_id: &str,
        request_kind: &str,
        request: &R,
    ) -> Result<A, String> {
        let payload = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        let reply = self.0.service.ask(job_id, request_kind, payload).await?;
        serde_json::from_slice(&reply).map_err(|e| format!("unreadable answer: {e}"))
    }

    /// Runs one attempt in a scratch directory of its own, storing its artifacts.
    async fn attempt(
        &self,
        job_id: &str,
        order: &WorkOrder,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<(serde_json::Value, Vec<Artifact>), AttemptError> {
        if let Some(reason) = &self.0.settings.unable {
            return Err(AttemptError::Failed(reason.clone()));
        }
        let scratch = tempfile::Builder::new()
            .prefix("keyframe-job-")
            .tempdir_in(&self.0.settings.scratch_dir)
            .map_err(|e| AttemptError::Failed(format!("no scratch space: {e}")))?;
        let input = self
            .0
            .storage
            .local_copy(&order.source.storage_key, scratch.path())
            .await
            .map_err(|e| AttemptError::Failed(format!("the video could not be read from storage: {e:#}")))?;
        let out_dir = scratch.path().join("out");
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(|e| AttemptError::Failed(format!("no scratch space: {e}")))?;
        let (result, files) = match order.job_type {
            JobType::Analyze => self.analyze(&input, &out_dir, cancel, progress).await?,
            JobType::Clip => cut_clips(&input, &order.parameters, &out_dir, cancel, progress).await?,
        };
        progress.set(99, "storing artifacts");
        let mut artifacts = Vec::with_capacity(files.len());
        for (file, content_type) in files {
            let name = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let storage_key = format!("jobs/{job_id}/attempt-{}/{name}", order.attempt);
            let size_bytes = self
                .0
                .storage
                .put_file(&storage_key, &file)
                .await
                .map_err(|e| AttemptError::Failed(format!("storing {name} failed: {e:#}")))?;
            artifacts.push(Artifact {
                name,
                content_type: content_type.to_owned(),
                size_bytes,
                storage_key,
            });
        }
        Ok((result, artifacts))
    }

    async fn analyze(
        &self,
        input: &Path,
        out_dir: &Path,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<(serde_json::Value, Vec<(PathBuf, &'static str)>), AttemptError> {
        progress.set(0, "probing");
        let facts = probe::probe(input).await.map_err(|error| match error {
            ProbeError::Tool(MediaError::Cancelled) => AttemptError::Stopped,
            other => AttemptError::Failed(other.to_string()),
        })?;
        if facts
            .duration_ms
            .is_some_and(|ms| ms > keyframe_domain::media::VideoFacts::MAX_DURATION_MS)
        {
            return Err(AttemptError::Failed("the video is longer than 12 hours".to_owned()));
        }
        progress.set(1, "analysing");
        let analysis = analysis::analyze(input, &facts, self.0.settings.analysis, out_dir, cancel, |percent| {
            progress.set(percent.min(98), "analysing");
        })
        .await?;
        let result = serde_json::to_value(&analysis.report)
            .map_err(|e| AttemptError::Failed(format!("the report could not be written: {e}")))?;
        let files = analysis
            .thumbnails
            .into_iter()
            .map(|path| (path, "image/jpeg"))
            .collect();
        Ok((result, files))
    }
}

/// The clips a `clip` job cuts, chosen by the service from the analysis when the job was
/// requested (see [`ClipParameters`]).
async fn cut_clips(
    input: &Path,
    parameters: &serde_json::Value,
    out_dir: &Path,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<(serde_json::Value, Vec<(PathBuf, &'static str)>), AttemptError> {
    let spans: Vec<Span> = ClipParameters::read(parameters)
        .map_err(|e| AttemptError::Failed(format!("the job's clips are unreadable: {e}")))?
        .clips;
    if spans.is_empty() {
        return Err(AttemptError::Failed("the job names no clips to cut".to_owned()));
    }
    progress.set(0, "cutting clips");
    let files = clips::cut(input, &spans, out_dir, cancel, |percent| {
        progress.set(percent.min(98), "cutting clips");
    })
    .await?;
    let described: Vec<serde_json::Value> = files
        .iter()
        .zip(&spans)
        .map(|(file, span)| {
            serde_json::json!({
                "name": file.file_name().map(|n| n.to_string_lossy().into_owned()),
                "start_ms": span.start_ms,
                "end_ms": span.end_ms,
            })
        })
        .collect();
    let files = files.into_iter().map(|path| (path, "video/mp4")).collect();
    Ok((serde_json::json!({ "clips": described }), files))
}

/// How reporting an outcome ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    /// The service recorded it: settle the entry.
    Recorded,
    /// The service refused it for good: settle the entry, drop what the attempt made.
    Refused,
    /// The service stayed away: the entry was handed back unsettled.
    HandedBack,
}

/// A task that stops when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How far the running attempt is, shared with its heartbeat.
#[derive(Default)]
struct Progress {
    percent: AtomicU8,
    stage: Mutex<&'static str>,
}

impl Progress {
    fn set(&self, percent: u8, stage: &'static str) {
        self.percent.store(percent, Ordering::Relaxed);
        if let Ok(mut current) = self.stage.lock() {
            *current = stage;
        }
    }

    fn stage(&self) -> String {
        self.stage.lock().map(|stage| (*stage).to_owned()).unwrap_or_default()
    }
}
