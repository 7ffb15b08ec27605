//! A video worker of the test's own, killed or stopped on demand.

use crate::TestApp;
use keyframe::config::NatsArgs;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A video worker running inside the test process.
pub struct TestWorker {
    /// Its name.
    pub name: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: CancellationToken,
    scratch: PathBuf,
}

impl TestWorker {
    /// Runs `worker` (its scratch space in `scratch`) until killed or stopped.
    fn start(name: &str, scratch: PathBuf, worker: keyframe_worker::runner::Worker) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        Self {
            name: name.to_owned(),
            task,
            shutdown,
            scratch,
        }
    }

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
    /// Starts a worker on this app's NATS prefix (or, without NATS, in the app's process) and
    /// storage, beating every 250 ms.
    pub async fn spawn_worker(&self, name: &str) -> TestWorker {
        match self.in_process_jobs() {
            Some(jobs) => {
                let (scratch, settings) = worker_settings(name);
                let storage = keyframe_media::storage::Storage::open(&self.storage).expect("storage");
                TestWorker::start(name, scratch, jobs.worker(storage, settings))
            }
            None => self.spawn_worker_as(name, self.nats().args()).await,
        }
    }

    /// [`TestApp::spawn_worker`] connecting with `nats`.
    pub async fn spawn_worker_as(&self, name: &str, nats: NatsArgs) -> TestWorker {
        let (scratch, settings) = worker_settings(name);
        let storage = keyframe_media::storage::Storage::open(&self.storage).expect("storage");
        let client = nats.connect().await.expect("the worker connects");
        let naming = keyframe_eventlog::streams::Naming::new(nats.nats_prefix.clone());
        let worker = keyframe_worker::runner::Worker::new(client, naming, storage, settings);
        TestWorker::start(name, scratch, worker)
    }
}

/// A test worker's settings (one job at a time, a beat every 250 ms), with its scratch
/// directory made.
fn worker_settings(name: &str) -> (PathBuf, keyframe_worker::runner::WorkerSettings) {
    let scratch = std::env::temp_dir().join(format!("keyframe-test-scratch-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let settings = keyframe_worker::runner::WorkerSettings {
        name: name.to_owned(),
        concurrency: 1,
        heartbeat: Duration::from_millis(250),
        scratch_dir: scratch.clone(),
        analysis: keyframe_media::analysis::AnalysisOptions::default(),
        unable: None,
    };
    (scratch, settings)
}
