//! How appends wake the relay, and the process's other readers of the log.
//!
//! A relay that has caught up waits. Appends made in the same process as the leading relay wake
//! it directly, through a [`LocalRelay`]; appends made anywhere else send `NOTIFY` on
//! [`NOTIFY_CHANNEL`], from outside the appending transaction (a NOTIFY inside it would serialise
//! every commit in the database, see `migrations/postgres/0005_notify_after_commit.sql`), coalesced to one
//! in flight. The relay also polls, so a lost wake-up only delays it.
//!
//! Why not always NOTIFY: each is a transaction of its own that the listening backend must pass
//! on, and the relay does not need them while it is busy publishing. Bench, `keyframe serve` on
//! 2 cores with 32 clients creating projects: at 6,970 commands/s the NOTIFY statements and the
//! listener's backend took 17 % of a core; waking in memory, the same run made 7,670/s.
//!
//! Readers of the log inside the process (the in-process feeds of a deployment without NATS)
//! wait on [`LocalRelay::commits`], which every commit of this process's appends moves on.

use keyframe_database::Database;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Notify, mpsc, watch};

/// Channel the event repository notifies on after each append has committed.
pub const NOTIFY_CHANNEL: &str = "keyframe_events";

/// The relay of this process as the process's event writers see it: whether it leads, and a
/// bell to ring when events have committed. Cheap to clone; works across Tokio runtimes.
///
/// One handle serves one relay (leading is a flag, not a count). A default handle that no
/// relay ever takes never leads: appends through it always NOTIFY.
#[derive(Debug, Clone, Default)]
pub struct LocalRelay(Arc<LocalRelayState>);

#[derive(Debug)]
struct LocalRelayState {
    /// Whether a relay may run in another process (a deployment with NATS): only then do
    /// appends send `NOTIFY` when this process's relay does not lead.
    relayed_elsewhere: bool,
    leading: AtomicBool,
    appended: Notify,
    /// Counts this process's commits of appends, for every reader in the process.
    commits: watch::Sender<u64>,
}

impl Default for LocalRelayState {
    fn default() -> Self {
        Self {
            relayed_elsewhere: true,
            leading: AtomicBool::new(false),
            appended: Notify::new(),
            commits: watch::channel(0).0,
        }
    }
}

impl LocalRelay {
    /// The handle of a deployment without a relay (no NATS): appends never send `NOTIFY`, and
    /// only wake the readers of the log in this process.
    pub fn without_relay() -> Self {
        Self(Arc::new(LocalRelayState {
            relayed_elsewhere: false,
            ..LocalRelayState::default()
        }))
    }

    /// Whether this process's relay has taken the lead and listens. It can be briefly stale: a
    /// relay that just lost its lock clears it only when it notices, and until then rings go
    /// to it and the new leader elsewhere finds those events by polling.
    pub fn is_leading(&self) -> bool {
        self.0.leading.load(Ordering::Acquire)
    }

    /// A receiver that changes after each commit of appends made through this handle's writers:
    /// what readers of the log in this process wait on. Every receiver sees every change (a
    /// relay's ring wakes one waiter).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.0.commits.subscribe()
    }

    /// Marks this process's relay as leader until the guard drops.
    pub(crate) fn lead(&self) -> Leading {
        self.0.leading.store(true, Ordering::Release);
        Leading(self.clone())
    }

    /// Tells the relay that events have committed. Rings while it is busy fold into one.
    pub(crate) fn ring(&self) {
        self.0.appended.notify_one();
    }

    /// Waits for a ring (or returns at once for one that came while nobody waited).
    pub(crate) async fn rung(&self) {
        self.0.appended.notified().await;
    }
}

/// While held, the process's relay leads: appends ring it instead of sending NOTIFY.
pub(crate) struct Leading(LocalRelay);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.0.leading.store(false, Ordering::Release);
    }
}

/// Wakes the relay after appends: directly when it is this process's, else with at most one
/// `NOTIFY` in flight, however many appends ring. On SQLite only this process can be reading
/// the log, so the wake is always direct.
#[derive(Clone)]
pub(crate) struct RelayWake {
    local: LocalRelay,
    /// `None` on SQLite.
    notify: Option<mpsc::Sender<()>>,
}

impl RelayWake {
    /// Starts the task that sends the notifications (on Postgres); it ends when the last handle
    /// is dropped.
    pub(crate) fn spawn(database: &Database, local: LocalRelay) -> Self {
        let Some(pool) = database.postgres().cloned().filter(|_| local.0.relayed_elsewhere) else {
            return Self { local, notify: None };
        };
        // Capacity one: a ring while a NOTIFY is pending or in flight folds into the next one.
        let (notify, mut rung) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while rung.recv().await.is_some() {
                // A wake-up lost in a crash costs only latency (the relay polls), so this
                // statement's commit need not wait for the WAL flush.
                let sent = sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
                    .bind(NOTIFY_CHANNEL)
                    .execute(&pool)
                    .await;
                if let Err(error) = sent {
                    tracing::debug!(%error, "waking the relay failed; it will find the events by polling");
                }
            }
        });
        Self {
            local,
            notify: Some(notify),
        }
    }

    /// Events have committed.
    pub(crate) fn ring(&self) {
        self.local
            .0
            .commits
            .send_modify(|commits| *commits = commits.wrapping_add(1));
        match &self.notify {
            // Full means a wake-up is already pending; closed means the runtime is shutting down.
            Some(notify) if !self.local.is_leading() => {
                let _ = notify.try_send(());
            }
            _ => self.local.ring(),
        }
    }
}
