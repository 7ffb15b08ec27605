//! The commands of the `Subscription` aggregate.

use super::StripeSubscriptionState;
use crate::owner::Owner;
use chrono::{DateTime, Utc};

/// Commands for [`Subscription`](super::Subscription): each is one Stripe event.
#[derive(Debug, Clone)]
pub struct SubscriptionCommand {
    /// Whose: a user's or an organisation's.
    pub owner: Owner,
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
