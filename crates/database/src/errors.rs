//! What a driver's error means, in either dialect: an outage to answer "unavailable, try
//! again" to, or a refusal (a unique key) the caller handles.

/// Whether `error` means the database could not be reached or dropped the connection, as
/// opposed to refusing the statement: the caller should answer "unavailable, try again", not
/// report a bug.
///
/// Postgres: a restart, an administrator ending the connection, the network. SQLite: the file
/// stayed locked past the busy timeout, or the disk failed or filled up.
pub fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_unavailable(&code)
            } else {
                postgres_unavailable(&code)
            }
        }),
        _ => false,
    }
}

/// Connection exceptions, and the server ending or refusing connections (57P01 is a shutdown or
/// `pg_terminate_backend`). Not 08P01 (a protocol violation is a bug) nor 57014 (a cancelled
/// statement).
fn postgres_unavailable(sqlstate: &str) -> bool {
    matches!(
        sqlstate,
        "08000" | "08001" | "08003" | "08004" | "08006" | "57P01" | "57P02" | "57P03"
    )
}

/// SQLite reports an extended result code; its low byte is the primary code. `SQLITE_BUSY` (5)
/// and `SQLITE_LOCKED` (6) past the busy timeout, `SQLITE_IOERR` (10), `SQLITE_FULL` (13),
/// `SQLITE_CANTOPEN` (14).
fn sqlite_unavailable(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6 | 10 | 13 | 14))
}

/// Whether the database refused a row because a unique key (or primary key) already holds its
/// value.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_busy_and_io_errors_are_outages_but_constraints_are_not() {
        assert!(sqlite_unavailable("5"));
        assert!(sqlite_unavailable("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(sqlite_unavailable("778")); // SQLITE_IOERR_WRITE
        assert!(!sqlite_unavailable("2067")); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!sqlite_unavailable("1")); // SQLITE_ERROR: a bad statement
    }
}
