//! The rules a `Subscription` command can break.

/// Rules a [`SubscriptionCommand`](super::SubscriptionCommand) can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The command names another user's subscription.
    #[error("this subscription belongs to another user")]
    NotOwner,
}
