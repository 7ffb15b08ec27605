//! The events of the `Subscription` aggregate: a published contract (names and payloads never
//! change).

use super::StripeSubscriptionState;
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Events of [`Subscription`](super::Subscription).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    /// A subscription started.
    SubscriptionStarted {
        /// Whose: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
        /// What Stripe says.
        state: StripeSubscriptionState,
        /// The Stripe event.
        stripe_event_id: String,
        /// When Stripe made it.
        stripe_created: DateTime<Utc>,
    },
    /// It changed.
    SubscriptionUpdated {
        /// Whose: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
        /// What Stripe says now.
        state: StripeSubscriptionState,
        /// The Stripe event.
        stripe_event_id: String,
        /// When Stripe made it.
        stripe_created: DateTime<Utc>,
    },
    /// It ended.
    SubscriptionEnded {
        /// Whose: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
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
