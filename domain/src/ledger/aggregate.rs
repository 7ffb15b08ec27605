//! How the `CreditLedger` aggregate decides (commands into events) and evolves (events into state).

use super::{
    CreditLedger, GrantSource, LedgerCommand, LedgerError, LedgerEvent, MemberCharge, MemberUsage, Reservation,
    allowance_period,
};
use crate::ids::{JobId, UserId};
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

impl Aggregate for CreditLedger {
    const TYPE: &'static str = "CreditLedger";
    type Command = LedgerCommand;
    type Event = LedgerEvent;
    type Error = LedgerError;
    type Services = ();

    async fn handle(&mut self, command: LedgerCommand, _: &(), sink: &EventSink<Self>) -> Result<(), LedgerError> {
        match command {
            LedgerCommand::Grant {
                owner,
                amount,
                source,
                reason,
                at,
            } => {
                self.ensure_owner(owner)?;
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
                    owner,
                    amount,
                    source,
                    reason,
                    balance: self.balance + amount,
                    granted_at: at,
                };
                sink.write(event, self).await;
            }
            LedgerCommand::Reserve {
                owner,
                job_id,
                run,
                amount,
                member,
                at,
            } => {
                self.ensure_owner(owner)?;
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
                if let Some(MemberCharge {
                    member,
                    monthly_limit: Some(limit),
                }) = member
                {
                    let used = self.member_used_in(member, &self.member_period(member, at));
                    if used.saturating_add(amount) > limit {
                        return Err(LedgerError::MemberCreditLimit {
                            limit,
                            used,
                            required: amount,
                        });
                    }
                }
                if amount > self.available() {
                    return Err(LedgerError::InsufficientCredits {
                        available: self.available(),
                        required: amount,
                    });
                }
                let event = LedgerEvent::CreditsReserved {
                    owner,
                    job_id,
                    run,
                    amount,
                    member: member.map(|charge| charge.member),
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
                owner, amount, source, ..
            } => {
                self.owner = Some(owner);
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
                owner,
                job_id,
                run,
                amount,
                member,
                reserved_at,
            } => {
                self.owner = Some(owner);
                let period = match member {
                    Some(member) => self.member_period(member, reserved_at),
                    None => allowance_period(reserved_at),
                };
                if let Some(member) = member {
                    let usage = self.member_usage.entry(member).or_default();
                    if usage.period != period {
                        *usage = MemberUsage {
                            period: period.clone(),
                            used: 0,
                        };
                    }
                    usage.used += amount;
                }
                let reservation = Reservation {
                    run,
                    amount,
                    member,
                    period,
                };
                self.reservations.insert(job_id, reservation);
            }
            LedgerEvent::CreditsSettled {
                job_id,
                run,
                charged,
                released,
                ..
            } => {
                self.give_back_usage(job_id, run, released);
                self.close(job_id, run);
                self.balance -= charged;
            }
            LedgerEvent::CreditsReleased {
                job_id, run, amount, ..
            } => {
                self.give_back_usage(job_id, run, amount);
                self.close(job_id, run);
            }
            LedgerEvent::CreditsRefunded { amount, .. } => self.balance += amount,
        }
    }
}

impl CreditLedger {
    fn ensure_owner(&self, owner: Owner) -> Result<(), LedgerError> {
        match self.owner {
            Some(known) if known != owner => Err(LedgerError::NotOwner),
            _ => Ok(()),
        }
    }

    /// The month a reservation of `member`'s made at `at` counts in: the month of `at`, or the
    /// month they last reserved in if that is later (clocks of several processes differ a
    /// little at a month's turn: a month never goes back, so a late clock cannot reset it).
    fn member_period(&self, member: UserId, at: DateTime<Utc>) -> String {
        let period = allowance_period(at);
        match self.member_usage.get(&member) {
            Some(usage) if usage.period > period => usage.period.clone(),
            _ => period,
        }
    }

    /// What a run's reservation gave back (released, or not charged) no longer counts against
    /// its member's month.
    fn give_back_usage(&mut self, job_id: JobId, run: u32, amount: i64) {
        let Some(reservation) = self.reservations.get(&job_id).filter(|open| open.run == run) else {
            return;
        };
        let Some(member) = reservation.member else {
            return;
        };
        if let Some(usage) = self.member_usage.get_mut(&member)
            && usage.period == reservation.period
        {
            usage.used -= amount;
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
