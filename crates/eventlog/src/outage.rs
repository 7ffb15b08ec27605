//! Telling an outage from a bug: whether a database error means Postgres could not be reached,
//! so callers answer "unavailable, try again" instead of reporting a failure of their own.

/// Whether `error` means Postgres could not be reached or dropped the connection (a restart, an
/// administrator ending it, the network), as opposed to refusing the statement: the caller
/// should answer "unavailable, try again", not report a bug.
pub fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        // Connection exceptions, and the server ending or refusing connections (57P01 is a
        // shutdown or `pg_terminate_backend`). Not 08P01 (a protocol violation is a bug) nor
        // 57014 (a cancelled statement).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                "08000" | "08001" | "08003" | "08004" | "08006" | "57P01" | "57P02" | "57P03"
            )
        }),
        _ => false,
    }
}
