//! Given / when / then for the `Subscription` aggregate: each Stripe event once, in Stripe's
//! order whatever the delivery order.

use super::*;
use crate::ids::UserId;
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;

struct Given {
    owner_id: UserId,
    at: DateTime<Utc>,
}

impl Given {
    fn new() -> Self {
        Self {
            owner_id: UserId::new(),
            at: Utc::now(),
        }
    }

    fn state(&self, subscription_id: &str, plan: &str, status: &str) -> StripeSubscriptionState {
        StripeSubscriptionState {
            subscription_id: subscription_id.to_owned(),
            customer_id: "cus_1".to_owned(),
            plan: plan.to_owned(),
            status: status.to_owned(),
            current_period_end: Some(self.at + chrono::Duration::days(30)),
            cancel_at_period_end: false,
        }
    }

    fn command(&self, event_id: &str, seconds: i64, change: SubscriptionChange) -> SubscriptionCommand {
        SubscriptionCommand {
            owner: Owner::User(self.owner_id),
            stripe_event_id: event_id.to_owned(),
            stripe_created: self.at + chrono::Duration::seconds(seconds),
            change,
        }
    }

    fn started(&self) -> SubscriptionEvent {
        SubscriptionEvent::SubscriptionStarted {
            owner: Owner::User(self.owner_id),
            state: self.state("sub_1", "pro", "active"),
            stripe_event_id: "evt_1".to_owned(),
            stripe_created: self.at,
        }
    }
}

fn subscription() -> TestFramework<Subscription> {
    TestFramework::<Subscription>::with(())
}

#[test]
fn a_completed_checkout_starts_the_subscription() {
    let g = Given::new();
    subscription()
        .given_no_previous_events()
        .when(g.command(
            "evt_1",
            0,
            SubscriptionChange::Started(g.state("sub_1", "pro", "active")),
        ))
        .then_expect_events(vec![g.started()]);
}

#[test]
fn the_same_stripe_event_twice_changes_nothing() {
    let g = Given::new();
    subscription()
        .given(vec![g.started()])
        .when(g.command(
            "evt_1",
            0,
            SubscriptionChange::Started(g.state("sub_1", "pro", "active")),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_changes_the_plan() {
    let g = Given::new();
    subscription()
        .given(vec![g.started()])
        .when(g.command(
            "evt_2",
            10,
            SubscriptionChange::Updated(g.state("sub_1", "studio", "active")),
        ))
        .then_expect_events(vec![SubscriptionEvent::SubscriptionUpdated {
            owner: Owner::User(g.owner_id),
            state: g.state("sub_1", "studio", "active"),
            stripe_event_id: "evt_2".to_owned(),
            stripe_created: g.at + chrono::Duration::seconds(10),
        }]);
}

#[test]
fn an_update_older_than_the_last_change_is_ignored() {
    let g = Given::new();
    subscription()
        .given(vec![g.started()])
        .when(g.command(
            "evt_0",
            -10,
            SubscriptionChange::Updated(g.state("sub_1", "studio", "past_due")),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_of_an_earlier_subscription_leaves_the_running_one_alone() {
    let g = Given::new();
    subscription()
        .given(vec![g.started()])
        .when(g.command(
            "evt_3",
            10,
            SubscriptionChange::Updated(g.state("sub_0", "studio", "active")),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn deletion_ends_the_subscription_and_its_plan() {
    let g = Given::new();
    let ended = SubscriptionEvent::SubscriptionEnded {
        owner: Owner::User(g.owner_id),
        subscription_id: "sub_1".to_owned(),
        stripe_event_id: "evt_4".to_owned(),
        stripe_created: g.at + chrono::Duration::seconds(20),
    };
    subscription()
        .given(vec![g.started()])
        .when(g.command(
            "evt_4",
            20,
            SubscriptionChange::Ended {
                subscription_id: "sub_1".to_owned(),
            },
        ))
        .then_expect_events(vec![ended.clone()]);
    let mut state = Subscription::default();
    state.apply(g.started());
    assert_eq!(state.plan(), Some("pro"));
    state.apply(ended);
    assert!(state.has_ended());
    assert_eq!(state.plan(), None);
}

#[test]
fn deletion_of_another_subscription_leaves_the_running_one_alone() {
    let g = Given::new();
    let ended_earlier = SubscriptionEvent::SubscriptionEnded {
        owner: Owner::User(g.owner_id),
        subscription_id: "sub_0".to_owned(),
        stripe_event_id: "evt_5".to_owned(),
        stripe_created: g.at + chrono::Duration::seconds(20),
    };
    subscription()
        .given(vec![g.started()])
        .when(g.command(
            "evt_5",
            20,
            SubscriptionChange::Ended {
                subscription_id: "sub_0".to_owned(),
            },
        ))
        .then_expect_events(vec![ended_earlier.clone()]);
    let mut state = Subscription::default();
    state.apply(g.started());
    state.apply(ended_earlier);
    assert_eq!(state.plan(), Some("pro"));
}

#[test]
fn a_start_delivered_after_the_end_does_not_revive_the_subscription() {
    let g = Given::new();
    let ended = SubscriptionEvent::SubscriptionEnded {
        owner: Owner::User(g.owner_id),
        subscription_id: "sub_1".to_owned(),
        stripe_event_id: "evt_9".to_owned(),
        stripe_created: g.at + chrono::Duration::seconds(90),
    };
    subscription()
        .given(vec![ended])
        .when(g.command(
            "evt_1",
            0,
            SubscriptionChange::Started(g.state("sub_1", "pro", "active")),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn a_start_delivered_after_an_update_of_the_same_subscription_changes_nothing() {
    let g = Given::new();
    let updated = SubscriptionEvent::SubscriptionUpdated {
        owner: Owner::User(g.owner_id),
        state: g.state("sub_1", "studio", "past_due"),
        stripe_event_id: "evt_2".to_owned(),
        stripe_created: g.at,
    };
    subscription()
        .given(vec![updated])
        .when(g.command(
            "evt_1",
            0,
            SubscriptionChange::Started(g.state("sub_1", "pro", "active")),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn another_users_command_is_refused() {
    let g = Given::new();
    let mut command = g.command(
        "evt_9",
        30,
        SubscriptionChange::Updated(g.state("sub_1", "pro", "active")),
    );
    command.owner = Owner::User(UserId::new());
    subscription()
        .given(vec![g.started()])
        .when(command)
        .then_expect_error(SubscriptionError::NotOwner);
}
