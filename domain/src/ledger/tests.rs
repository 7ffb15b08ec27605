//! Given / when / then for every `CreditLedger` command, its success and each error.

use super::*;
use crate::ids::{JobId, UserId};
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
            owner_id: self.owner_id,
            amount,
            source: GrantSource::SignupBonus,
            reason: "welcome".to_owned(),
            balance,
            granted_at: self.at,
        }
    }

    fn reserved(&self, amount: i64) -> LedgerEvent {
        LedgerEvent::CreditsReserved {
            owner_id: self.owner_id,
            job_id: self.job_id,
            run: 0,
            amount,
            reserved_at: self.at,
        }
    }

    fn reserve(&self, job_id: JobId, amount: i64) -> LedgerCommand {
        LedgerCommand::Reserve {
            owner_id: self.owner_id,
            job_id,
            run: 0,
            amount,
            at: self.at,
        }
    }

    fn subscription(&self, invoice_id: &str) -> LedgerCommand {
        LedgerCommand::Grant {
            owner_id: self.owner_id,
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
            owner_id: g.owner_id,
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
            owner_id: g.owner_id,
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
        owner_id: g.owner_id,
        amount: 30,
        source: GrantSource::Allowance {
            plan: "free".to_owned(),
            period: period.to_owned(),
        },
        reason: format!("free plan allowance, {period}"),
        at: g.at,
    };
    let november = LedgerEvent::CreditsGranted {
        owner_id: g.owner_id,
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
            owner_id: g.owner_id,
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
        owner_id: g.owner_id,
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
            owner_id: g.owner_id,
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
            owner_id: UserId::new(),
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
            owner_id: self.owner_id,
            job_id: self.job_id,
            run,
            amount,
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
            owner_id: self.owner_id,
            job_id: self.job_id,
            run,
            amount,
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
