//! The `CreditLedger` aggregate: one per user (its id is the user's), every movement of the
//! user's credits as an event with a reason and a reference.
//!
//! Credits are whole numbers. `balance` is what the user owns; `reserved` is held for jobs
//! that have not ended; `available = balance - reserved` is what a new job may reserve. No
//! command can take `available` below zero, so the balance never goes negative. Every command
//! that could arrive twice (a redelivered event, a replayed webhook) is idempotent by its
//! reference: the job and its run for reservations and their settlement, the invoice for
//! subscription grants, the month for the free plan's allowance.
//!
//! A job's reservation belongs to one run of it (see `Job::run`): a manual retry of a failed or
//! cancelled job is a new run that reserves again, so the late release of the earlier run can
//! never touch the new run's credits.

use crate::ids::{JobId, UserId};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where granted credits come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantSource {
    /// The bonus every new account gets.
    SignupBonus,
    /// An administrator's grant.
    Admin {
        /// Who granted.
        admin_id: UserId,
    },
    /// A subscription period, paid.
    Subscription {
        /// The paid invoice: each grants once.
        invoice_id: String,
        /// The Stripe event that reported it.
        stripe_event_id: String,
    },
    /// A month of the free plan's allowance, for an account without a paid subscription.
    Allowance {
        /// The plan whose allowance it is.
        plan: String,
        /// The calendar month (UTC) it is for, `YYYY-MM` (see [`allowance_period`]): each
        /// grants once.
        period: String,
    },
}

/// The allowance period (calendar month, UTC) that `at` falls in, as `YYYY-MM`.
pub fn allowance_period(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// Credits held for one run of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    run: u32,
    amount: i64,
}

/// A user's credits.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CreditLedger {
    owner_id: Option<UserId>,
    balance: i64,
    reservations: BTreeMap<JobId, Reservation>,
    /// For each job, its latest run whose reservation was settled or released: ending it again
    /// is a no-op.
    closed: BTreeMap<JobId, u32>,
    /// Invoices already granted.
    invoices: BTreeSet<String>,
    /// Allowance periods (`YYYY-MM`) already granted.
    #[serde(default)]
    allowances: BTreeSet<String>,
    signup_bonus_granted: bool,
}

impl CreditLedger {
    /// Credits owned.
    pub fn balance(&self) -> i64 {
        self.balance
    }

    /// Credits held for jobs that have not ended.
    pub fn reserved(&self) -> i64 {
        self.reservations.values().map(|r| r.amount).sum()
    }

    /// Credits a new job may reserve.
    pub fn available(&self) -> i64 {
        self.balance - self.reserved()
    }

    /// The open reservation of `job_id`, if any: its run and amount.
    pub fn reservation(&self, job_id: JobId) -> Option<(u32, i64)> {
        self.reservations.get(&job_id).map(|r| (r.run, r.amount))
    }
}

/// Commands for [`CreditLedger`].
#[derive(Debug, Clone)]
pub enum LedgerCommand {
    /// Add credits.
    Grant {
        /// The ledger's owner (also the aggregate id).
        owner_id: UserId,
        /// How many, more than zero.
        amount: i64,
        /// Where they come from.
        source: GrantSource,
        /// Why, in words.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Hold credits for a job before it exists.
    Reserve {
        /// The ledger's owner.
        owner_id: UserId,
        /// The job.
        job_id: JobId,
        /// Which run of it.
        run: u32,
        /// How many, zero or more.
        amount: i64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Charge a job's actual cost from its reservation and release the rest.
    Settle {
        /// The job.
        job_id: JobId,
        /// The run that ended.
        run: u32,
        /// Its actual cost (at most the reservation is charged).
        cost: i64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Give a job's reservation back (it failed, was cancelled, or was never created).
    Release {
        /// The job.
        job_id: JobId,
        /// The run that ended (or never started).
        run: u32,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// An administrator gives credits back.
    Refund {
        /// How many, more than zero.
        amount: i64,
        /// Who refunds.
        admin_id: UserId,
        /// What it refunds (a job id, a ticket), for the record.
        reference: String,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Events of [`CreditLedger`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LedgerEvent {
    /// Credits were added.
    CreditsGranted {
        /// The owner.
        owner_id: UserId,
        /// How many.
        amount: i64,
        /// Where from.
        source: GrantSource,
        /// Why.
        reason: String,
        /// The balance after.
        balance: i64,
        /// When.
        granted_at: DateTime<Utc>,
    },
    /// Credits were held for a job.
    CreditsReserved {
        /// The owner.
        owner_id: UserId,
        /// The job.
        job_id: JobId,
        /// Which run of it.
        #[serde(default)]
        run: u32,
        /// How many.
        amount: i64,
        /// When.
        reserved_at: DateTime<Utc>,
    },
    /// A job's cost was charged and the rest of its reservation released.
    CreditsSettled {
        /// The job.
        job_id: JobId,
        /// The run.
        #[serde(default)]
        run: u32,
        /// Charged.
        charged: i64,
        /// Released.
        released: i64,
        /// The balance after.
        balance: i64,
        /// When.
        settled_at: DateTime<Utc>,
    },
    /// A job's reservation was given back whole.
    CreditsReleased {
        /// The job.
        job_id: JobId,
        /// The run.
        #[serde(default)]
        run: u32,
        /// How many.
        amount: i64,
        /// Why.
        reason: String,
        /// When.
        released_at: DateTime<Utc>,
    },
    /// An administrator refunded credits.
    CreditsRefunded {
        /// How many.
        amount: i64,
        /// Who.
        admin_id: UserId,
        /// What it refunds.
        reference: String,
        /// Why.
        reason: String,
        /// The balance after.
        balance: i64,
        /// When.
        refunded_at: DateTime<Utc>,
    },
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CreditsGranted { .. } => "CreditsGranted",
            Self::CreditsReserved { .. } => "CreditsReserved",
            Self::CreditsSettled { .. } => "CreditsSettled",
            Self::CreditsReleased { .. } => "CreditsReleased",
            Self::CreditsRefunded { .. } => "CreditsRefunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Rules a [`LedgerCommand`] can break.
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
    /// The command names another user's ledger.
    #[error("this ledger belongs to another user")]
    NotOwner,
}

impl Aggregate for CreditLedger {
    const TYPE: &'static str = "CreditLedger";
    type Command = LedgerCommand;
    type Event = LedgerEvent;
    type Error = LedgerError;
    type Services = ();

    async fn handle(&mut self, command: LedgerCommand, _: &(), sink: &EventSink<Self>) -> Result<(), LedgerError> {
        match command {
            LedgerCommand::Grant {
                owner_id,
                amount,
                source,
                reason,
                at,
            } => {
                self.ensure_owner(owner_id)?;
                if amount <= 0 {
                    return Err(LedgerError::InvalidAmount {
                        expected: "more than zero",
                    });
                }
                let repeated = match &source {
                    GrantSource::Subscription { invoice_id, .. } => self.invoices.contains(invoice_id),
                    GrantSource::SignupBonus => self.signup_bonus_granted,
                    GrantSource::Allowance { period, .. } => self.allowances.contains(period),
                    GrantSource::Admin { .. } => false,
                };
                if repeated {
                    return Ok(());
                }
                let event = LedgerEvent::CreditsGranted {
                    owner_id,
                    amount,
                    source,
                    reason,
                    balance: self.balance + amount,
                    granted_at: at,
                };
                sink.write(event, self).await;
            }
            LedgerCommand::Reserve {
                owner_id,
                job_id,
                run,
                amount,
                at,
            } => {
                self.ensure_owner(owner_id)?;
                if amount < 0 {
                    return Err(LedgerError::InvalidAmount {
                        expected: "zero or more",
                    });
                }
                match self.reservations.get(&job_id) {
                    Some(open) if open.run >= run => return Ok(()),
                    Some(open) => return Err(LedgerError::ReservationOpen { run: open.run }),
                    None if self.is_closed(job_id, run) => return Ok(()),
                    None => {}
                }
                if amount > self.available() {
                    return Err(LedgerError::InsufficientCredits {
                        available: self.available(),
                        required: amount,
                    });
                }
                let event = LedgerEvent::CreditsReserved {
                    owner_id,
                    job_id,
                    run,
                    amount,
                    reserved_at: at,
                };
                sink.write(event, self).await;
            }
            LedgerCommand::Settle { job_id, run, cost, at } => {
                if cost < 0 {
                    return Err(LedgerError::InvalidAmount {
                        expected: "zero or more",
                    });
                }
                let Some(reserved) = self.open_reservation(job_id, run)? else {
                    return Ok(());
                };
                let charged = cost.min(reserved);
                let event = LedgerEvent::CreditsSettled {
                    job_id,
                    run,
                    charged,
                    released: reserved - charged,
                    balance: self.balance - charged,
                    settled_at: at,
                };
                sink.write(event, self).await;
            }
            LedgerCommand::Release {
                job_id,
                run,
                reason,
                at,
            } => {
                let Some(amount) = self.open_reservation(job_id, run)? else {
                    return Ok(());
                };
                let event = LedgerEvent::CreditsReleased {
                    job_id,
                    run,
                    amount,
                    reason,
                    released_at: at,
                };
                sink.write(event, self).await;
            }
            LedgerCommand::Refund {
                amount,
                admin_id,
                reference,
                reason,
                at,
            } => {
                if amount <= 0 {
                    return Err(LedgerError::InvalidAmount {
                        expected: "more than zero",
                    });
                }
                let event = LedgerEvent::CreditsRefunded {
                    amount,
                    admin_id,
                    reference,
                    reason,
                    balance: self.balance + amount,
                    refunded_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: LedgerEvent) {
        match event {
            LedgerEvent::CreditsGranted {
                owner_id,
                amount,
                source,
                ..
            } => {
                self.owner_id = Some(owner_id);
                self.balance += amount;
                match source {
                    GrantSource::Subscription { invoice_id, .. } => {
                        self.invoices.insert(invoice_id);
                    }
                    GrantSource::SignupBonus => self.signup_bonus_granted = true,
                    GrantSource::Allowance { period, .. } => {
                        self.allowances.insert(period);
                    }
                    GrantSource::Admin { .. } => {}
                }
            }
            LedgerEvent::CreditsReserved {
                owner_id,
                job_id,
                run,
                amount,
                ..
            } => {
                self.owner_id = Some(owner_id);
                self.reservations.insert(job_id, Reservation { run, amount });
            }
            LedgerEvent::CreditsSettled {
                job_id, run, charged, ..
            } => {
                self.close(job_id, run);
                self.balance -= charged;
            }
            LedgerEvent::CreditsReleased { job_id, run, .. } => self.close(job_id, run),
            LedgerEvent::CreditsRefunded { amount, .. } => self.balance += amount,
        }
    }
}

impl CreditLedger {
    fn ensure_owner(&self, owner_id: UserId) -> Result<(), LedgerError> {
        match self.owner_id {
            Some(owner) if owner != owner_id => Err(LedgerError::NotOwner),
            _ => Ok(()),
        }
    }

    /// The open reservation of `run` of `job_id`; `None` when it was already settled or
    /// released (the command is then a repeat, and does nothing).
    fn open_reservation(&self, job_id: JobId, run: u32) -> Result<Option<i64>, LedgerError> {
        match self.reservations.get(&job_id) {
            Some(open) if open.run == run => Ok(Some(open.amount)),
            _ if self.is_closed(job_id, run) => Ok(None),
            _ => Err(LedgerError::NoReservation),
        }
    }

    /// Whether `run` of `job_id` (or a later run) has ended.
    fn is_closed(&self, job_id: JobId, run: u32) -> bool {
        self.closed.get(&job_id).is_some_and(|closed| *closed >= run)
    }

    fn close(&mut self, job_id: JobId, run: u32) {
        if self.reservations.get(&job_id).is_some_and(|open| open.run == run) {
            self.reservations.remove(&job_id);
        }
        let closed = self.closed.entry(job_id).or_insert(run);
        *closed = (*closed).max(run);
    }
}

#[cfg(test)]
mod tests;
