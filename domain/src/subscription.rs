//! The `Subscription` aggregate: one per user (its id is the user's), the user's paid plan as
//! Stripe reports it through webhooks.
//!
//! Stripe delivers webhooks at least once and in no promised order, so every command carries
//! the Stripe event it comes from: an event already applied changes nothing, and a change older
//! than the last one applied (by Stripe's `created` time) is ignored. A subscription's credits
//! are not granted here but in the `CreditLedger`, once per paid invoice.

use crate::ids::UserId;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A user's subscription.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Subscription {
    owner_id: Option<UserId>,
    plan: Option<String>,
    /// Stripe's status (`active`, `past_due`, `canceled`, ...); `None` before any.
    status: Option<String>,
    customer_id: Option<String>,
    subscription_id: Option<String>,
    current_period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
    /// Stripe events applied.
    applied: BTreeSet<String>,
    /// Stripe's time of the newest change applied.
    last_change: Option<DateTime<Utc>>,
    /// Subscriptions that ended: a late event about one of them changes nothing.
    ended: BTreeSet<String>,
}

impl Subscription {
    /// The plan, while a subscription exists and has not ended.
    pub fn plan(&self) -> Option<&str> {
        self.plan.as_deref().filter(|_| !self.has_ended())
    }
    /// Stripe's status of it.
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }
    /// Stripe's customer.
    pub fn customer_id(&self) -> Option<&str> {
        self.customer_id.as_deref()
    }
    /// Stripe's subscription.
    pub fn subscription_id(&self) -> Option<&str> {
        self.subscription_id.as_deref()
    }
    /// When the paid period ends.
    pub fn current_period_end(&self) -> Option<DateTime<Utc>> {
        self.current_period_end
    }
    /// Whether it ends at the end of the period.
    pub fn cancel_at_period_end(&self) -> bool {
        self.cancel_at_period_end
    }
    /// Whether the subscription ended (or there never was one).
    pub fn has_ended(&self) -> bool {
        matches!(self.status.as_deref(), None | Some("canceled" | "incomplete_expired"))
    }
}

/// What Stripe says about a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeSubscriptionState {
    /// Stripe's subscription id.
    pub subscription_id: String,
    /// Stripe's customer id.
    pub customer_id: String,
    /// The plan it is for.
    pub plan: String,
    /// Stripe's status.
    pub status: String,
    /// When the paid period ends.
    pub current_period_end: Option<DateTime<Utc>>,
    /// Whether it ends at the end of the period.
    pub cancel_at_period_end: bool,
}

/// Commands for [`Subscription`]: each is one Stripe event.
#[derive(Debug, Clone)]
pub struct SubscriptionCommand {
    /// Whose.
    pub owner_id: UserId,
    /// The Stripe event (`evt_...`).
    pub stripe_event_id: String,
    /// When Stripe made it.
    pub stripe_created: DateTime<Utc>,
    /// What it says.
    pub change: SubscriptionChange,
}

/// What a Stripe event says.
#[derive(Debug, Clone)]
pub enum SubscriptionChange {
    /// Checkout finished: the subscription starts (`checkout.session.completed`).
    Started(StripeSubscriptionState),
    /// The plan, status or period changed (`customer.subscription.updated`).
    Updated(StripeSubscriptionState),
    /// The subscription ended (`customer.subscription.deleted`).
    Ended {
        /// Stripe's subscription id.
        subscription_id: String,
    },
}

/// Events of [`Subscription`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    /// A subscription started.
    SubscriptionStarted {
        /// Whose.
        owner_id: UserId,
        /// What Stripe says.
        state: StripeSubscriptionState,
        /// The Stripe event.
        stripe_event_id: String,
        /// When Stripe made it.
        stripe_created: DateTime<Utc>,
    },
    /// It changed.
    SubscriptionUpdated {
        /// Whose.
        owner_id: UserId,
        /// What Stripe says now.
        state: StripeSubscriptionState,
        /// The Stripe event.
        stripe_event_id: String,
        /// When Stripe made it.
        stripe_created: DateTime<Utc>,
    },
    /// It ended.
    SubscriptionEnded {
        /// Whose.
        owner_id: UserId,
        /// Stripe's subscription id.
        subscription_id: String,
        /// The Stripe event.
        stripe_event_id: String,
        /// When Stripe made it.
        stripe_created: DateTime<Utc>,
    },
}

impl DomainEvent for SubscriptionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SubscriptionStarted { .. } => "SubscriptionStarted",
            Self::SubscriptionUpdated { .. } => "SubscriptionUpdated",
            Self::SubscriptionEnded { .. } => "SubscriptionEnded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Rules a [`SubscriptionCommand`] can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The command names another user's subscription.
    #[error("this subscription belongs to another user")]
    NotOwner,
}

impl Aggregate for Subscription {
    const TYPE: &'static str = "Subscription";
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SubscriptionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SubscriptionError> {
        let SubscriptionCommand {
            owner_id,
            stripe_event_id,
            stripe_created,
            change,
        } = command;
        if self.owner_id.is_some_and(|owner| owner != owner_id) {
            return Err(SubscriptionError::NotOwner);
        }
        let stale = self.last_change.is_some_and(|last| stripe_created < last);
        if self.applied.contains(&stripe_event_id) || stale {
            return Ok(());
        }
        let about = match &change {
            SubscriptionChange::Started(state) | SubscriptionChange::Updated(state) => &state.subscription_id,
            SubscriptionChange::Ended { subscription_id } => subscription_id,
        };
        if self.ended.contains(about) {
            return Ok(());
        }
        let event = match change {
            // Already known from an update (Stripe does not promise order): that is newer.
            SubscriptionChange::Started(state)
                if self.subscription_id.as_deref() == Some(state.subscription_id.as_str()) =>
            {
                return Ok(());
            }
            SubscriptionChange::Started(state) => SubscriptionEvent::SubscriptionStarted {
                owner_id,
                state,
                stripe_event_id,
                stripe_created,
            },
            SubscriptionChange::Updated(state) => {
                // An update of another subscription while this one runs (a late event of an
                // earlier subscription) says nothing about the current one.
                if !self.has_ended() && self.subscription_id.as_deref() != Some(state.subscription_id.as_str()) {
                    return Ok(());
                }
                SubscriptionEvent::SubscriptionUpdated {
                    owner_id,
                    state,
                    stripe_event_id,
                    stripe_created,
                }
            }
            // Recorded even for a subscription not seen yet (its start may arrive later): it
            // must never start after its end.
            SubscriptionChange::Ended { subscription_id } => SubscriptionEvent::SubscriptionEnded {
                owner_id,
                subscription_id,
                stripe_event_id,
                stripe_created,
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: SubscriptionEvent) {
        match event {
            SubscriptionEvent::SubscriptionStarted {
                owner_id,
                state,
                stripe_event_id,
                stripe_created,
            }
            | SubscriptionEvent::SubscriptionUpdated {
                owner_id,
                state,
                stripe_event_id,
                stripe_created,
            } => {
                self.owner_id = Some(owner_id);
                self.plan = Some(state.plan);
                self.status = Some(state.status);
                self.customer_id = Some(state.customer_id);
                self.subscription_id = Some(state.subscription_id);
                self.current_period_end = state.current_period_end;
                self.cancel_at_period_end = state.cancel_at_period_end;
                self.applied.insert(stripe_event_id);
                self.last_change = Some(stripe_created);
            }
            SubscriptionEvent::SubscriptionEnded {
                owner_id,
                subscription_id,
                stripe_event_id,
                stripe_created,
            } => {
                self.owner_id = Some(owner_id);
                if self.subscription_id.as_deref() == Some(subscription_id.as_str()) {
                    self.status = Some("canceled".to_owned());
                    self.cancel_at_period_end = false;
                    self.last_change = Some(stripe_created);
                }
                self.ended.insert(subscription_id);
                self.applied.insert(stripe_event_id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
