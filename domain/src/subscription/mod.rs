//! The `Subscription` aggregate: one per user (its id is the user's), the user's paid plan as
//! Stripe reports it through webhooks.
//!
//! Stripe delivers webhooks at least once and in no promised order, so every command carries
//! the Stripe event it comes from: an event already applied changes nothing, and a change older
//! than the last one applied (by Stripe's `created` time) is ignored. A subscription's credits
//! are not granted here but in the `CreditLedger`, once per paid invoice.

mod aggregate;
mod command;
mod error;
mod event;

pub use command::{SubscriptionChange, SubscriptionCommand};
pub use error::SubscriptionError;
pub use event::SubscriptionEvent;

use crate::owner::Owner;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// An owner's subscription (a user's or an organisation's).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Subscription {
    owner: Option<Owner>,
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

#[cfg(test)]
mod tests;
