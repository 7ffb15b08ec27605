//! Opening the embedded database file.
//!
//! - WAL mode: readers read while the writer writes, and a commit appends to the WAL instead
//!   of rewriting pages.
//! - `synchronous = FULL`: a commit is on disk before it is acknowledged, so an acknowledged
//!   command survives a power cut, not only a crash. The group commit of the event log shares
//!   each sync among every command waiting.
//! - One process writes a file: a process that opens it to write holds an exclusive lock on
//!   `<file>.lock` for as long as the handle lives, and a second such process is refused with a
//!   message saying so. Several processes in one database would each hold in-process state
//!   (the feed, the workers, the caches) that the other cannot see; Postgres is the way to run
//!   more than one. Reading needs no lock (an export may run beside `serve`).

use crate::Database;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a statement waits for a lock another connection holds before it fails with
/// `SQLITE_BUSY`. Writers of this process queue for the writing connection instead, so this
/// bounds only the rare wait on a checkpoint or a reader of another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a writer waits for the writing connection before giving up: a write that waits
/// this long answers "unavailable, try again".
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a transaction that may write begins: taking the write lock at once. One that began
/// deferred, read, and then wrote could find its snapshot outdated by another write and fail
/// instead of waiting.
pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Whether a process opens the file to change it or only to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads and writes: takes the file's lock, creates and migrates it if need be.
    ReadWrite,
    /// Reads only, beside a process that may be writing: an export, a check.
    ReadOnly,
}

/// Why the embedded database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process writes this file.
    #[error(
        "another Keyframe process is using {}: one process runs on an embedded database \
         (stop the other one, or move to Postgres to run several)",
        path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The file or its lock file could not be opened or created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused to open it.
    #[error("opening the embedded database: {0}")]
    Sqlite(#[source] sqlx::Error),
}

/// Opens (creating it when `access` writes) the embedded database at `path`, with up to
/// `readers` reading connections.
pub async fn open(path: &Path, access: Access, readers: u32) -> Result<Database, OpenError> {
    let lock = match access {
        Access::ReadWrite => Some(lock(path)?),
        Access::ReadOnly => None,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("temp_store", "memory");
    let writer = if access == Access::ReadWrite {
        // Opened first: it creates the file and its WAL, which read-only connections need.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(WRITER_ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone().create_if_missing(true))
            .await
            .map_err(OpenError::Sqlite)?;
        Some(pool)
    } else {
        None
    };
    let readers = SqlitePoolOptions::new()
        .max_connections(readers.max(1))
        .acquire_timeout(WRITER_ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .connect_with(options.read_only(true))
        .await
        .map_err(OpenError::Sqlite)?;
    // A read-only handle's "writer" is a reader too: a write through it fails plainly.
    let writer = writer.unwrap_or_else(|| readers.clone());
    Ok(Database::embedded(readers, writer, lock))
}

/// The file whose lock marks the database as in use by a writing process.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock on `<path>.lock`, without waiting. The operating system releases it
/// when the process ends however it ends, so a crash never leaves the database locked.
fn lock(path: &Path) -> Result<File, OpenError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| OpenError::Io {
            what: format!("creating {}", parent.display()),
            source,
        })?;
    }
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| OpenError::Io {
            what: format!("opening {}", lock_path.display()),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked { path: path.to_owned() }),
        Err(TryLockError::Error(source)) => Err(OpenError::Io {
            what: format!("locking {}", lock_path.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    /// What a crash test cannot see: that a commit waits for the disk (so it survives a power
    /// cut), on the connection every write goes through.
    #[tokio::test]
    async fn the_writing_connection_commits_to_disk_in_wal_mode() {
        let dir = std::env::temp_dir().join(format!("kf_sqlite_open_{}", uuid::Uuid::now_v7().simple()));
        let database = open(&dir.join("keyframe.db"), Access::ReadWrite, 1)
            .await
            .expect("open");
        let Backend::Sqlite(writer) = database.writer() else {
            panic!("an embedded database");
        };
        let pragma = |name: &'static str| async move {
            sqlx::query_scalar::<_, String>(&format!("SELECT CAST({name} AS TEXT) FROM pragma_{name}"))
                .fetch_one(writer)
                .await
                .expect(name)
        };
        // 2 is FULL.
        assert_eq!(pragma("synchronous").await, "2");
        assert_eq!(pragma("journal_mode").await, "wal");
        assert_eq!(pragma("foreign_keys").await, "1");
        database.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
