//! Billing: the settlement of job credits from the event stream ([`settlement`]), Stripe
//! subscriptions ([`plans`], [`stripe`]) and the free plan's monthly allowance
//! ([`allowance`]).
//!
//! Credits are reserved when a job is requested (by the API, in the request) and settled here
//! when its run ends; subscriptions grant each paid invoice's credits to the ledger once, and
//! accounts without one get the free plan's credits once a month.

pub mod allowance;
pub mod plans;
pub mod settlement;
pub mod stripe;
