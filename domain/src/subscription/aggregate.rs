//! How the `Subscription` aggregate decides (commands into events) and evolves (events into state).

use super::{Subscription, SubscriptionChange, SubscriptionCommand, SubscriptionError, SubscriptionEvent};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

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
            owner,
            stripe_event_id,
            stripe_created,
            change,
        } = command;
        if self.owner.is_some_and(|known| known != owner) {
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
                owner,
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
                    owner,
                    state,
                    stripe_event_id,
                    stripe_created,
                }
            }
            // Recorded even for a subscription not seen yet (its start may arrive later): it
            // must never start after its end.
            SubscriptionChange::Ended { subscription_id } => SubscriptionEvent::SubscriptionEnded {
                owner,
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
                owner,
                state,
                stripe_event_id,
                stripe_created,
            }
            | SubscriptionEvent::SubscriptionUpdated {
                owner,
                state,
                stripe_event_id,
                stripe_created,
            } => {
                self.owner = Some(owner);
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
                owner,
                subscription_id,
                stripe_event_id,
                stripe_created,
            } => {
                self.owner = Some(owner);
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
