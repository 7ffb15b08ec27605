//! Given / when / then for every `CreditLedger` command, its success and each error.

use super::*;
use crate::ids::{JobId, UserId};
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;

struct Given {
    owner_id: UserId,
    admin_id: UserId,
    job_id: JobId,
    at: DateTime<Utc>,
}

impl Given {
    fn new() -> Self {
        Self {
            owner_id: UserId::new(),
            admin_id: UserId::new(),
            job_id: JobId::new(),
            at: Utc::now(),
        }
    }

    fn granted(&self, amount: i64, balance: i64) -> LedgerEvent {
        LedgerEvent::CreditsGranted {
            owner: Owner::User(self.owner_id),
            amount,
            source: GrantSource::SignupBonus,
            reason: "welcome".to_owned(),
            balance,
            granted_at: self.at,
        }
    }

    fn reserved(&self, amount: i64) -> LedgerEvent {
        LedgerEvent::CreditsReserved {
            owner: Owner::User(self.owner_id),
            job_id: self.job_id,
            run: 0,
            amount,
            member: None,
            reserved_at: self.at,
        }
    }

    fn reserve(&self, job_id: JobId, amount: i64) -> LedgerCommand {
        LedgerCommand::Reserve {
            owner: Owner::User(self.owner_id),
            job_id,
            run: 0,
            amount,
            member: None,
            at: self.at,
        }
    }

    fn subscription(&self, invoice_id: &str) -> LedgerCommand {
        LedgerCommand::Grant {
            owner: Owner::User(self.owner_id),
            amount: 500,
            source: GrantSource::Subscription {
                invoice_id: invoice_id.to_owned(),
                stripe_event_id: "evt_1".to_owned(),
            },
            reason: "pro plan, monthly".to_owned(),
            at: self.at,
        }
    }
}

fn ledger() -> TestFramework<CreditLedger> {
    TestFramework::<CreditLedger>::with(())
}

#[test]
fn a_grant_adds_credits_and_records_the_balance() {
    let g = Given::new();
    ledger()
        .given_no_previous_events()
        .when(LedgerCommand::Grant {
            owner: Owner::User(g.owner_id),
            amount: 100,
            source: GrantSource::SignupBonus,
            reason: "welcome".to_owned(),
            at: g.at,
        })
        .then_expect_events(vec![g.granted(100, 100)]);
}

#[test]
fn the_signup_bonus_is_granted_once() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(LedgerCommand::Grant {
            owner: Owner::User(g.owner_id),
            amount: 100,
            source: GrantSource::SignupBonus,
            reason: "welcome".to_owned(),
            at: g.at,
        })
        .then_expect_events(vec![]);
}

#[test]
fn the_free_allowance_grants_once_per_month() {
    let g = Given::new();
    let allowance = |period: &str| LedgerCommand::Grant {
        owner: Owner::User(g.owner_id),
        amount: 30,
        source: GrantSource::Allowance {
            plan: "free".to_owned(),
            period: period.to_owned(),
        },
        reason: format!("free plan allowance, {period}"),
        at: g.at,
    };
    let november = LedgerEvent::CreditsGranted {
        owner: Owner::User(g.owner_id),
        amount: 30,
        source: GrantSource::Allowance {
            plan: "free".to_owned(),
            period: "2026-11".to_owned(),
        },
        reason: "free plan allowance, 2026-11".to_owned(),
        balance: 130,
        granted_at: g.at,
    };
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(allowance("2026-11"))
        .then_expect_events(vec![november.clone()]);
    ledger()
        .given(vec![g.granted(100, 100), november.clone()])
        .when(allowance("2026-11"))
        .then_expect_events(vec![]);
    ledger()
        .given(vec![g.granted(100, 100), november])
        .when(allowance("2026-12"))
        .then_expect_events(vec![LedgerEvent::CreditsGranted {
            owner: Owner::User(g.owner_id),
            amount: 30,
            source: GrantSource::Allowance {
                plan: "free".to_owned(),
                period: "2026-12".to_owned(),
            },
            reason: "free plan allowance, 2026-12".to_owned(),
            balance: 160,
            granted_at: g.at,
        }]);
}

#[test]
fn an_allowance_period_is_the_utc_calendar_month() {
    let at = |raw: &str| raw.parse::<DateTime<Utc>>().expect("a timestamp");
    assert_eq!(allowance_period(at("2026-11-30T23:59:59Z")), "2026-11");
    assert_eq!(allowance_period(at("2026-12-01T00:00:00Z")), "2026-12");
    assert_eq!(allowance_period(at("2027-01-01T00:30:00+01:00")), "2026-12");
}

#[test]
fn an_invoice_grants_its_credits_once() {
    let g = Given::new();
    let first = LedgerEvent::CreditsGranted {
        owner: Owner::User(g.owner_id),
        amount: 500,
        source: GrantSource::Subscription {
            invoice_id: "in_1".to_owned(),
            stripe_event_id: "evt_1".to_owned(),
        },
        reason: "pro plan, monthly".to_owned(),
        balance: 500,
        granted_at: g.at,
    };
    ledger()
        .given_no_previous_events()
        .when(g.subscription("in_1"))
        .then_expect_events(vec![first.clone()]);
    ledger()
        .given(vec![first])
        .when(g.subscription("in_1"))
        .then_expect_events(vec![]);
}

#[test]
fn a_grant_of_nothing_is_refused() {
    let g = Given::new();
    ledger()
        .given_no_previous_events()
        .when(LedgerCommand::Grant {
            owner: Owner::User(g.owner_id),
            amount: 0,
            source: GrantSource::Admin { admin_id: g.admin_id },
            reason: "oops".to_owned(),
            at: g.at,
        })
        .then_expect_error(LedgerError::InvalidAmount {
            expected: "more than zero",
        });
}

#[test]
fn another_users_grant_cannot_enter_the_ledger() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(LedgerCommand::Grant {
            owner: Owner::User(UserId::new()),
            amount: 10,
            source: GrantSource::Admin { admin_id: g.admin_id },
            reason: "mistake".to_owned(),
            at: g.at,
        })
        .then_expect_error(LedgerError::NotOwner);
}

#[test]
fn a_reservation_within_the_available_credits_is_held() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(g.reserve(g.job_id, 60))
        .then_expect_events(vec![g.reserved(60)]);
}

#[test]
fn a_reservation_over_the_available_credits_is_refused_with_the_figures() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60)])
        .when(g.reserve(JobId::new(), 41))
        .then_expect_error(LedgerError::InsufficientCredits {
            available: 40,
            required: 41,
        });
}

#[test]
fn reserving_twice_for_the_same_job_holds_once() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60)])
        .when(g.reserve(g.job_id, 60))
        .then_expect_events(vec![]);
}

#[test]
fn a_negative_reservation_is_refused() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(g.reserve(g.job_id, -1))
        .then_expect_error(LedgerError::InvalidAmount {
            expected: "zero or more",
        });
}

#[test]
fn settling_charges_the_cost_and_releases_the_rest() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60)])
        .when(LedgerCommand::Settle {
            job_id: g.job_id,
            run: 0,
            cost: 45,
            at: g.at,
        })
        .then_expect_events(vec![LedgerEvent::CreditsSettled {
            job_id: g.job_id,
            run: 0,
            charged: 45,
            released: 15,
            balance: 55,
            settled_at: g.at,
        }]);
}

#[test]
fn settling_never_charges_more_than_was_reserved() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60)])
        .when(LedgerCommand::Settle {
            job_id: g.job_id,
            run: 0,
            cost: 90,
            at: g.at,
        })
        .then_expect_events(vec![LedgerEvent::CreditsSettled {
            job_id: g.job_id,
            run: 0,
            charged: 60,
            released: 0,
            balance: 40,
            settled_at: g.at,
        }]);
}

#[test]
fn settling_again_changes_nothing() {
    let g = Given::new();
    let settled = LedgerEvent::CreditsSettled {
        job_id: g.job_id,
        run: 0,
        charged: 60,
        released: 0,
        balance: 40,
        settled_at: g.at,
    };
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60), settled])
        .when(LedgerCommand::Settle {
            job_id: g.job_id,
            run: 0,
            cost: 60,
            at: g.at,
        })
        .then_expect_events(vec![]);
}

#[test]
fn settling_a_job_without_a_reservation_is_refused() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(LedgerCommand::Settle {
            job_id: g.job_id,
            run: 0,
            cost: 10,
            at: g.at,
        })
        .then_expect_error(LedgerError::NoReservation);
}

#[test]
fn releasing_gives_the_whole_reservation_back_once() {
    let g = Given::new();
    let released = LedgerEvent::CreditsReleased {
        job_id: g.job_id,
        run: 0,
        amount: 60,
        reason: "job failed".to_owned(),
        released_at: g.at,
    };
    let release = || LedgerCommand::Release {
        job_id: g.job_id,
        run: 0,
        reason: "job failed".to_owned(),
        at: g.at,
    };
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60)])
        .when(release())
        .then_expect_events(vec![released.clone()]);
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60), released])
        .when(release())
        .then_expect_events(vec![]);
}

#[test]
fn a_released_run_cannot_reserve_again() {
    let g = Given::new();
    let released = LedgerEvent::CreditsReleased {
        job_id: g.job_id,
        run: 0,
        amount: 60,
        reason: "cancelled".to_owned(),
        released_at: g.at,
    };
    ledger()
        .given(vec![g.granted(100, 100), g.reserved(60), released])
        .when(g.reserve(g.job_id, 60))
        .then_expect_events(vec![]);
}

#[test]
fn a_refund_adds_credits_with_its_reference() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(LedgerCommand::Refund {
            amount: 30,
            admin_id: g.admin_id,
            reference: g.job_id.to_string(),
            reason: "the clip was wrong".to_owned(),
            at: g.at,
        })
        .then_expect_events(vec![LedgerEvent::CreditsRefunded {
            amount: 30,
            admin_id: g.admin_id,
            reference: g.job_id.to_string(),
            reason: "the clip was wrong".to_owned(),
            balance: 130,
            refunded_at: g.at,
        }]);
}

#[test]
fn a_negative_refund_is_refused() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100)])
        .when(LedgerCommand::Refund {
            amount: -5,
            admin_id: g.admin_id,
            reference: "x".to_owned(),
            reason: "no".to_owned(),
            at: g.at,
        })
        .then_expect_error(LedgerError::InvalidAmount {
            expected: "more than zero",
        });
}

#[test]
fn available_is_the_balance_less_what_is_reserved() {
    let g = Given::new();
    let mut ledger = CreditLedger::default();
    for event in [g.granted(100, 100), g.reserved(60)] {
        ledger.apply(event);
    }
    assert_eq!((ledger.balance(), ledger.reserved(), ledger.available()), (100, 60, 40));
    assert_eq!(ledger.reservation(g.job_id), Some((0, 60)));
}

impl Given {
    fn reserved_run(&self, run: u32, amount: i64) -> LedgerEvent {
        LedgerEvent::CreditsReserved {
            owner: Owner::User(self.owner_id),
            job_id: self.job_id,
            run,
            amount,
            member: None,
            reserved_at: self.at,
        }
    }

    fn released_run(&self, run: u32, amount: i64) -> LedgerEvent {
        LedgerEvent::CreditsReleased {
            job_id: self.job_id,
            run,
            amount,
            reason: "cancelled".to_owned(),
            released_at: self.at,
        }
    }

    fn reserve_run(&self, run: u32, amount: i64) -> LedgerCommand {
        LedgerCommand::Reserve {
            owner: Owner::User(self.owner_id),
            job_id: self.job_id,
            run,
            amount,
            member: None,
            at: self.at,
        }
    }
}

#[test]
fn a_retried_job_reserves_again_for_its_next_run() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved_run(0, 60), g.released_run(0, 60)])
        .when(g.reserve_run(1, 60))
        .then_expect_events(vec![g.reserved_run(1, 60)]);
}

#[test]
fn a_next_run_cannot_reserve_while_the_earlier_run_holds_credits() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved_run(0, 60)])
        .when(g.reserve_run(1, 30))
        .then_expect_error(LedgerError::ReservationOpen { run: 0 });
}

#[test]
fn a_late_release_of_an_earlier_run_leaves_the_next_run_alone() {
    let g = Given::new();
    ledger()
        .given(vec![
            g.granted(100, 100),
            g.reserved_run(0, 60),
            g.released_run(0, 60),
            g.reserved_run(1, 60),
        ])
        .when(LedgerCommand::Release {
            job_id: g.job_id,
            run: 0,
            reason: "cancelled".to_owned(),
            at: g.at,
        })
        .then_expect_events(vec![]);
}

#[test]
fn settling_a_run_that_was_never_reserved_is_refused() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved_run(0, 60)])
        .when(LedgerCommand::Settle {
            job_id: g.job_id,
            run: 1,
            cost: 60,
            at: g.at,
        })
        .then_expect_error(LedgerError::NoReservation);
}

#[test]
fn a_repeated_reservation_of_an_open_run_changes_nothing() {
    let g = Given::new();
    ledger()
        .given(vec![g.granted(100, 100), g.reserved_run(1, 60)])
        .when(g.reserve_run(1, 60))
        .then_expect_events(vec![]);
}

/// An organisation's ledger with 1,000 credits, and one member.
struct Shared {
    organization: Owner,
    member: UserId,
    at: DateTime<Utc>,
}

impl Shared {
    fn new() -> Self {
        Self {
            organization: Owner::Organization(crate::ids::OrganizationId::new()),
            member: UserId::new(),
            at: "2026-12-15T12:00:00Z".parse().expect("time"),
        }
    }

    fn funded(&self) -> LedgerEvent {
        LedgerEvent::CreditsGranted {
            owner: self.organization,
            amount: 1_000,
            source: GrantSource::SignupBonus,
            reason: "credits".to_owned(),
            balance: 1_000,
            granted_at: self.at,
        }
    }

    fn reserve(&self, job_id: JobId, amount: i64, limit: Option<i64>, at: DateTime<Utc>) -> LedgerCommand {
        LedgerCommand::Reserve {
            owner: self.organization,
            job_id,
            run: 0,
            amount,
            member: Some(MemberCharge {
                member: self.member,
                monthly_limit: limit,
            }),
            at,
        }
    }

    fn reserved(&self, job_id: JobId, amount: i64, at: DateTime<Utc>) -> LedgerEvent {
        LedgerEvent::CreditsReserved {
            owner: self.organization,
            job_id,
            run: 0,
            amount,
            member: Some(self.member),
            reserved_at: at,
        }
    }
}

#[test]
fn a_members_reservation_records_the_member() {
    let s = Shared::new();
    let job = JobId::new();
    ledger()
        .given(vec![s.funded()])
        .when(s.reserve(job, 40, Some(100), s.at))
        .then_expect_events(vec![s.reserved(job, 40, s.at)]);
}

#[test]
fn a_reservation_past_the_members_monthly_limit_is_refused() {
    let s = Shared::new();
    let first = JobId::new();
    ledger()
        .given(vec![s.funded(), s.reserved(first, 80, s.at)])
        .when(s.reserve(JobId::new(), 30, Some(100), s.at))
        .then_expect_error(LedgerError::MemberCreditLimit {
            limit: 100,
            used: 80,
            required: 30,
        });
}

#[test]
fn what_was_released_or_not_charged_no_longer_counts_against_the_limit() {
    let s = Shared::new();
    let (released, settled) = (JobId::new(), JobId::new());
    let mut ledger_state = CreditLedger::default();
    for event in [
        s.funded(),
        s.reserved(released, 50, s.at),
        s.reserved(settled, 50, s.at),
        LedgerEvent::CreditsReleased {
            job_id: released,
            run: 0,
            amount: 50,
            reason: "cancelled".to_owned(),
            released_at: s.at,
        },
        LedgerEvent::CreditsSettled {
            job_id: settled,
            run: 0,
            charged: 30,
            released: 20,
            balance: 970,
            settled_at: s.at,
        },
    ] {
        ledger_state.apply(event);
    }
    assert_eq!(
        ledger_state.member_used_in(s.member, "2026-12"),
        30,
        "only the charge counts"
    );
    assert_eq!(
        ledger_state.member_used_in(s.member, "2027-01"),
        0,
        "a new month starts afresh"
    );
}

#[test]
fn a_new_month_starts_the_members_limit_afresh() {
    let s = Shared::new();
    let next_month: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().expect("time");
    let job = JobId::new();
    ledger()
        .given(vec![s.funded(), s.reserved(JobId::new(), 100, s.at)])
        .when(s.reserve(job, 100, Some(100), next_month))
        .then_expect_events(vec![s.reserved(job, 100, next_month)]);
}

#[test]
fn without_a_limit_a_member_reserves_what_the_organisation_has() {
    let s = Shared::new();
    let job = JobId::new();
    ledger()
        .given(vec![s.funded(), s.reserved(JobId::new(), 900, s.at)])
        .when(s.reserve(job, 100, None, s.at))
        .then_expect_events(vec![s.reserved(job, 100, s.at)]);
}

#[test]
fn a_reservation_stamped_in_the_month_before_still_counts_against_this_months_limit() {
    let s = Shared::new();
    let late_clock: DateTime<Utc> = "2026-11-30T23:59:59Z".parse().expect("time");
    ledger()
        .given(vec![s.funded(), s.reserved(JobId::new(), 90, s.at)])
        .when(s.reserve(JobId::new(), 20, Some(100), late_clock))
        .then_expect_error(LedgerError::MemberCreditLimit {
            limit: 100,
            used: 90,
            required: 20,
        });
}
