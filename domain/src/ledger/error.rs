//! The rules a `CreditLedger` command can break.

/// Rules a [`LedgerCommand`](super::LedgerCommand) can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Not enough available credits for the reservation.
    #[error("insufficient credits: {available} available, {required} required")]
    InsufficientCredits {
        /// Available now.
        available: i64,
        /// Asked for.
        required: i64,
    },
    /// An amount that must be positive (or, for a reservation or cost, not negative) is not.
    #[error("the amount must be {expected}")]
    InvalidAmount {
        /// What it must be.
        expected: &'static str,
    },
    /// Settling or releasing a job that holds no reservation here.
    #[error("no reservation for this job")]
    NoReservation,
    /// Reserving for a new run of a job while its earlier run still holds credits.
    #[error("run {run} of this job still holds a reservation")]
    ReservationOpen {
        /// The run that holds it.
        run: u32,
    },
    /// The command names another owner's ledger.
    #[error("this ledger belongs to another owner")]
    NotOwner,
    /// The reservation would take the member past their monthly credit limit in the
    /// organisation.
    #[error(
        "your monthly credit limit in this organisation is {limit}: {used} used this month, {required} more required"
    )]
    MemberCreditLimit {
        /// The limit.
        limit: i64,
        /// Used (charged or held) this calendar month.
        used: i64,
        /// Asked for.
        required: i64,
    },
}
