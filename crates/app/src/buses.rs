//! The command buses, one per aggregate type, built once per process over one event writer.
//!
//! The API, the jobs coordinator and the billing settlement all take their buses from here, so
//! commands on one aggregate take turns in this process (and share its cache) instead of
//! colliding, and concurrent commands of every type share the writer's commits.

use keyframe_database::Database;
use keyframe_domain::job::Job;
use keyframe_domain::ledger::CreditLedger;
use keyframe_domain::library::MediaLibrary;
use keyframe_domain::organization::Organization;
use keyframe_domain::project::Project;
use keyframe_domain::session::Session;
use keyframe_domain::subscription::Subscription;
use keyframe_domain::user::User;
use keyframe_eventlog::commands::CommandBus;
use keyframe_eventlog::store::EventRepository;
use keyframe_eventlog::wake::LocalRelay;
use std::sync::Arc;

/// Accounts each process keeps in memory between logins.
pub const USERS_CACHED: usize = 4_096;

/// Credit ledgers each process keeps in memory between commands.
pub const LEDGERS_CACHED: usize = 4_096;

/// How often a command on a ledger is tried when other processes' commands got there first.
pub const CONTENDED_MAX_ATTEMPTS: u32 = 20;

/// Organisations each process keeps in memory between commands and membership checks.
pub const ORGANIZATIONS_CACHED: usize = 4_096;

/// Every aggregate's bus. Cheap to clone: each bus is shared.
#[derive(Clone)]
pub struct Buses {
    /// Accounts.
    pub users: Arc<CommandBus<User>>,
    /// Sessions.
    pub sessions: Arc<CommandBus<Session>>,
    /// Projects.
    pub projects: Arc<CommandBus<Project>>,
    /// Users' media libraries (uploads and the storage quota).
    pub libraries: Arc<CommandBus<MediaLibrary>>,
    /// Jobs.
    pub jobs: Arc<CommandBus<Job>>,
    /// Users' credit ledgers.
    pub ledgers: Arc<CommandBus<CreditLedger>>,
    /// Users' subscriptions.
    pub subscriptions: Arc<CommandBus<Subscription>>,
    /// Organisations: their members, roles and invitations.
    pub organizations: Arc<CommandBus<Organization>>,
}

impl Buses {
    /// The buses over one event writer with `append_writers` statements in flight. Appends
    /// wake `local_relay` directly while it leads (the relay of this process, if it runs one),
    /// else the leading relay through `NOTIFY`.
    pub fn new(database: Database, append_writers: usize, local_relay: LocalRelay) -> Self {
        let events = EventRepository::with_writers(database, append_writers, local_relay);
        Self {
            // Every guess at a password is two events on its account (admitted, then judged):
            // keep the accounts that log in in memory, so a guess reads only what is new.
            users: Arc::new(CommandBus::sharing(&events).cached(USERS_CACHED)),
            sessions: Arc::new(CommandBus::sharing(&events)),
            projects: Arc::new(CommandBus::sharing(&events)),
            libraries: Arc::new(CommandBus::sharing(&events)),
            jobs: Arc::new(CommandBus::sharing(&events)),
            // Every job request and every run's end is a command on its owner's ledger, which
            // grows with each: keep the busy ones in memory.
            // An organisation's ledger takes the job requests of all its members, through every
            // API process at once: give the processes' races room to settle.
            ledgers: Arc::new(
                CommandBus::sharing(&events)
                    .cached(LEDGERS_CACHED)
                    .max_attempts(CONTENDED_MAX_ATTEMPTS),
            ),
            subscriptions: Arc::new(CommandBus::sharing(&events)),
            // Every request on an organisation's resources asks who its members are (through
            // the membership guard): keep them in memory, reading only what is new.
            organizations: Arc::new(CommandBus::sharing(&events).cached(ORGANIZATIONS_CACHED)),
        }
    }
}
