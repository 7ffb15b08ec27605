//! Billing: the settlement of job credits from the event stream ([`settlement`]) and Stripe
//! subscriptions ([`plans`], [`stripe`]).
//!
//! Credits are reserved when a job is requested (by the API, in the request) and settled here
//! when its run ends; subscriptions grant each paid invoice's credits to the ledger once.

pub mod plans;
pub mod settlement;
pub mod stripe;
