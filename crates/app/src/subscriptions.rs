//! Subscriptions: buying a plan through Stripe Checkout, and what Stripe's webhook events
//! change.
//!
//! Stripe is the source of what was paid; Keyframe learns it only from webhooks (verified by the
//! transport that received them), each processed once: the event id is recorded after
//! processing, and processing itself is idempotent (the `Subscription` aggregate ignores an
//! event it has applied, the `CreditLedger` grants each invoice once), so two deliveries
//! racing each other still change things once. A paid invoice grants its plan's monthly
//! credits.

use crate::App;
use crate::error::{AppError, BillingRefusal};
use crate::policy::{Action, Actor, Resource, require};
use chrono::DateTime;
use keyframe_billing::plans::{Plan, Plans};
use keyframe_billing::stripe::{
    CheckoutRequest, CheckoutSession, StripeClient, StripeConfig, StripeError, WebhookEvent,
};
use keyframe_database::portable;
use keyframe_domain::ids::{OrganizationId, UserId};
use keyframe_domain::ledger::GrantSource;
use keyframe_domain::owner::Owner;
use keyframe_domain::subscription::{StripeSubscriptionState, Subscription, SubscriptionChange, SubscriptionCommand};
use keyframe_eventlog::metadata::{Actor as EventActor, CommandMetadata};
use uuid::Uuid;

/// How long an event Keyframe cannot attribute to a user is refused (so that Stripe delivers
/// it again once the checkout that introduces its customer has arrived). Past it the event is
/// acknowledged unhandled and logged: a Stripe account may hold customers that are not
/// Keyframe's, and refusing their events for days would make Stripe disable the endpoint.
const ATTRIBUTION_GRACE_SECS: i64 = 3_600;
/// The invoices that pay a subscription period: only they grant the plan's credits (not
/// prorations of a plan change, nor one-off invoices).
const PERIOD_INVOICES: [&str; 2] = ["subscription_create", "subscription_cycle"];

/// Subscriptions and Stripe, as configured.
#[derive(Clone, Default)]
pub struct BillingSettings {
    /// The plans.
    pub plans: Plans,
    /// Stripe's API; `None`: checkout is refused as not configured.
    pub stripe: Option<StripeConfig>,
    /// The webhook endpoint's signing secret (`whsec_...`); `None`: webhooks are refused.
    pub webhook_secret: Option<String>,
    /// Where Stripe sends a buyer after paying.
    pub success_url: String,
    /// Where Stripe sends a buyer who turns back.
    pub cancel_url: String,
}

/// Subscriptions and Stripe: the settings, and Stripe's API when configured.
pub struct Billing {
    /// The settings.
    pub settings: BillingSettings,
    /// Stripe's API, when configured.
    pub stripe: Option<StripeClient>,
}

/// What a webhook event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookOutcome {
    /// The event id was processed before; nothing was done again.
    pub duplicate: bool,
    /// Keyframe acted on it (`false` for event types it does not handle).
    pub handled: bool,
}

impl App {
    /// `owner`'s subscription as it stands (empty before any).
    pub async fn subscription(&self, owner: Owner) -> Result<Subscription, AppError> {
        Ok(self
            .buses
            .subscriptions
            .load(&owner.id().to_string())
            .await?
            .unwrap_or_default())
    }

    /// `actor` starts buying `plan_name` for `owner` (themselves, or an organisation they own):
    /// a Stripe Checkout Session to send them to. The same `client_key` answers the same
    /// session.
    pub async fn start_checkout(
        &self,
        actor: &Actor,
        owner: Owner,
        plan_name: &str,
        client_key: Option<String>,
    ) -> Result<CheckoutSession, AppError> {
        let standing = self.standing(actor, owner).await?;
        require(actor, Action::Pay, &Resource::Ledger { standing })?;
        let billing = &self.billing.settings;
        let plan = billing
            .plans
            .named(plan_name)
            .ok_or_else(|| AppError::invalid("plan", "no such plan; see GET /api/v1/subscriptions/plans"))?;
        let price_id = plan
            .stripe_price_id
            .as_deref()
            .ok_or_else(|| AppError::invalid("plan", "this plan is not sold"))?;
        let stripe = self
            .billing
            .stripe
            .as_ref()
            .ok_or(BillingRefusal::NotConfigured("KEYFRAME_STRIPE_SECRET_KEY"))?;
        let subscription = self.subscription(owner).await?;
        if !subscription.has_ended() {
            return Err(BillingRefusal::AlreadySubscribed.into());
        }
        let customer_id = match subscription.customer_id() {
            Some(known) => Some(known.to_owned()),
            None => portable!(self.database.reader(), pool => { sqlx::query_scalar(
                    "SELECT customer_id FROM stripe_customers WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1",
                )
                .bind(owner.id())
                .fetch_optional(pool)
                .await })?,
        };
        let user = owner.id().to_string();
        // Scoped by owner, so one client's key can never answer another owner's session.
        let key = format!(
            "keyframe-checkout-{user}-{}",
            client_key.unwrap_or_else(|| Uuid::now_v7().to_string())
        );
        let request = CheckoutRequest {
            user_id: &user,
            owner_kind: owner.kind().as_str(),
            plan: &plan.name,
            price_id,
            customer_id: customer_id.as_deref(),
            success_url: &billing.success_url,
            cancel_url: &billing.cancel_url,
        };
        stripe
            .create_checkout_session(&request, &key)
            .await
            .map_err(|error| match error {
                StripeError::Rejected { .. } => {
                    tracing::error!(%error, plan = %plan.name, "Stripe refused a Checkout Session");
                    BillingRefusal::ProviderRejected(error.to_string()).into()
                }
                StripeError::Unavailable(_) => {
                    tracing::warn!(%error, "Stripe is unavailable");
                    BillingRefusal::ProviderUnavailable.into()
                }
            })
    }

    /// Processes a Stripe event whose signature the transport verified: once per event id.
    pub async fn process_stripe_event(&self, event: &WebhookEvent) -> Result<WebhookOutcome, AppError> {
        let seen: Option<String> = portable!(self.database.reader(), pool => { sqlx::query_scalar("SELECT event_id FROM stripe_webhook_events WHERE event_id = $1")
            .bind(&event.id)
            .fetch_optional(pool)
            .await })?;
        if seen.is_some() {
            return Ok(WebhookOutcome {
                duplicate: true,
                handled: false,
            });
        }
        let outcome = match event.event_type.as_str() {
            "checkout.session.completed" => checkout_completed(self, event).await?,
            "invoice.paid" => invoice_paid(self, event).await?,
            "customer.subscription.updated" => subscription_updated(self, event).await?,
            "customer.subscription.deleted" => subscription_deleted(self, event).await?,
            _ => Outcome::Ignored,
        };
        // An event acknowledged without an owner is not marked processed: sent again later
        // (from Stripe's dashboard, once the customer is known), it is processed then.
        if outcome != Outcome::Unattributed {
            portable!(self.database.writer(), pool => { sqlx::query(
                "INSERT INTO stripe_webhook_events (event_id, event_type, processed_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&event.id)
            .bind(&event.event_type)
            .bind(keyframe_domain::clock::now())
            .execute(pool)
            .await .map(|done| done.rows_affected()) })?;
        }
        let handled = outcome == Outcome::Handled;
        tracing::info!(event_id = %event.id, event_type = %event.event_type, handled, "Stripe event processed");
        Ok(WebhookOutcome {
            duplicate: false,
            handled,
        })
    }
}

/// What processing an event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Keyframe acted on it.
    Handled,
    /// Nothing in it for Keyframe (a type it does not handle, an invoice that pays no period).
    Ignored,
    /// No user could be found for it, past the grace: acknowledged, not marked processed.
    Unattributed,
}

fn missing(event: &WebhookEvent, field: &str) -> AppError {
    BillingRefusal::InvalidEvent(format!("{} {} has no {field}", event.event_type, event.id)).into()
}

fn metadata(event: &WebhookEvent) -> CommandMetadata {
    let mut metadata = CommandMetadata::system().with_actor(EventActor::System);
    metadata.causation_id = format!("stripe:{}", event.id);
    metadata
}

/// Whose the event is: the owner id Keyframe put in the object's metadata at checkout (at the
/// first of `pointers` that has one; `owner_kind` beside it says an organisation's), else the
/// owner of its Stripe customer. `None` for an event no owner can be found for after
/// [`ATTRIBUTION_GRACE_SECS`]; within it, 422 so Stripe retries.
async fn owner_of(app: &App, event: &WebhookEvent, pointers: &[&str]) -> Result<Option<Owner>, AppError> {
    let found = pointers.iter().find_map(|pointer| {
        let id = event.text(pointer)?.parse::<Uuid>().ok()?;
        // `/client_reference_id` has its kind in the session's metadata.
        let kind_pointer = match pointer.strip_suffix("user_id") {
            Some(metadata) if metadata.ends_with("metadata/") => format!("{metadata}owner_kind"),
            _ => "/metadata/owner_kind".to_owned(),
        };
        Some(owner_from(id, event.text(&kind_pointer)))
    });
    if let Some(owner) = found {
        return Ok(Some(owner));
    }
    let customer = event.text("/customer").ok_or_else(|| missing(event, "customer"))?;
    let known: Option<(Uuid, String)> = portable!(app.database.reader(), pool => { sqlx::query_as("SELECT user_id, owner_kind FROM stripe_customers WHERE customer_id = $1")
            .bind(customer)
            .fetch_optional(pool)
            .await })?;
    if let Some((id, kind)) = known {
        return Ok(Some(owner_from(id, Some(&kind))));
    }
    if keyframe_domain::clock::now().timestamp() - event.created > ATTRIBUTION_GRACE_SECS {
        tracing::error!(event_id = %event.id, event_type = %event.event_type, customer,
            "a Stripe event for a customer that is no Keyframe user's; acknowledged unhandled");
        return Ok(None);
    }
    tracing::warn!(event_id = %event.id, customer, "a Stripe event for a customer no checkout introduced yet");
    Err(BillingRefusal::UnknownCustomer(customer.to_owned()).into())
}

/// The owner `id` names, by the `owner_kind` written beside it (absent: a user).
fn owner_from(id: Uuid, kind: Option<&str>) -> Owner {
    match kind {
        Some("organization") => Owner::Organization(OrganizationId(id)),
        _ => Owner::User(UserId(id)),
    }
}

/// The plan a subscription object is for: by its price, else by the plan Keyframe put in its
/// metadata.
fn plan_of<'a>(app: &'a App, event: &WebhookEvent, prices: &[&str], names: &[&str]) -> Option<&'a Plan> {
    let plans = &app.billing.settings.plans;
    event
        .first_text(prices)
        .and_then(|price| plans.priced(price))
        .or_else(|| event.first_text(names).and_then(|name| plans.named(name)))
}

fn unknown_plan(event: &WebhookEvent) -> AppError {
    tracing::error!(event_id = %event.id, "a Stripe event names a plan this server does not know; check KEYFRAME_PLANS");
    BillingRefusal::UnknownPlan(format!("{} {} is for no configured plan", event.event_type, event.id)).into()
}

async fn change_subscription(
    app: &App,
    event: &WebhookEvent,
    owner: Owner,
    change: SubscriptionChange,
) -> Result<(), AppError> {
    let command = || SubscriptionCommand {
        owner,
        stripe_event_id: event.id.clone(),
        stripe_created: event.created_at(),
        change: change.clone(),
    };
    app.buses
        .subscriptions
        .execute(&owner.id().to_string(), command, &metadata(event))
        .await?;
    Ok(())
}

async fn checkout_completed(app: &App, event: &WebhookEvent) -> Result<Outcome, AppError> {
    if event.text("/mode") != Some("subscription") {
        return Ok(Outcome::Ignored);
    }
    let Some(owner) = owner_of(app, event, &["/client_reference_id", "/metadata/user_id"]).await? else {
        return Ok(Outcome::Unattributed);
    };
    let customer_id = event.text("/customer").ok_or_else(|| missing(event, "customer"))?;
    let subscription_id = event
        .text("/subscription")
        .ok_or_else(|| missing(event, "subscription"))?;
    let plan = plan_of(app, event, &[], &["/metadata/plan"]).ok_or_else(|| unknown_plan(event))?;
    portable!(app.database.writer(), pool => { sqlx::query(
        "INSERT INTO stripe_customers (customer_id, user_id, owner_kind, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(customer_id)
    .bind(owner.id())
    .bind(owner.kind().as_str())
    .bind(keyframe_domain::clock::now())
    .execute(pool)
    .await .map(|done| done.rows_affected()) })?;
    let started = StripeSubscriptionState {
        subscription_id: subscription_id.to_owned(),
        customer_id: customer_id.to_owned(),
        plan: plan.name.clone(),
        status: "active".to_owned(),
        current_period_end: None,
        cancel_at_period_end: false,
    };
    change_subscription(app, event, owner, SubscriptionChange::Started(started)).await?;
    Ok(Outcome::Handled)
}

async fn invoice_paid(app: &App, event: &WebhookEvent) -> Result<Outcome, AppError> {
    let invoice_id = event.text("/id").ok_or_else(|| missing(event, "id"))?;
    let period = period_line(event);
    let pays_a_period = match event.text("/billing_reason") {
        Some(reason) if PERIOD_INVOICES.contains(&reason) => true,
        // A plan change that starts a new period at once bills it as an update: its period
        // line is marked as no proration.
        Some("subscription_update") => period.is_some_and(|line| is_proration(line) == Some(false)),
        _ => false,
    };
    if !pays_a_period {
        return Ok(Outcome::Ignored);
    }
    let Some(owner) = owner_of(
        app,
        event,
        &[
            "/parent/subscription_details/metadata/user_id",
            "/subscription_details/metadata/user_id",
            "/lines/data/0/metadata/user_id",
        ],
    )
    .await?
    else {
        return Ok(Outcome::Unattributed);
    };
    let plans = &app.billing.settings.plans;
    let period_price = period
        .and_then(|line| {
            line.pointer("/pricing/price_details/price")
                .or_else(|| line.pointer("/price/id"))
        })
        .and_then(|price| price.as_str());
    let priced = period_price.and_then(|price| plans.priced(price));
    let plan = match priced.or_else(|| {
        plan_of(
            app,
            event,
            &[],
            &[
                "/parent/subscription_details/metadata/plan",
                "/subscription_details/metadata/plan",
                "/lines/data/0/metadata/plan",
            ],
        )
    }) {
        Some(plan) => plan,
        None => {
            let subscription = app.subscription(owner).await?;
            subscription
                .plan()
                .and_then(|name| app.billing.settings.plans.named(name))
                .ok_or_else(|| unknown_plan(event))?
        }
    };
    if plan.monthly_credits == 0 {
        return Ok(Outcome::Handled);
    }
    let source = GrantSource::Subscription {
        invoice_id: invoice_id.to_owned(),
        stripe_event_id: event.id.clone(),
    };
    let reason = format!("{} plan, invoice {invoice_id} paid", plan.name);
    app.grant(owner, plan.monthly_credits, source, &reason, &metadata(event))
        .await?;
    Ok(Outcome::Handled)
}

/// The invoice line that pays the subscription's period: the first that is no proration.
fn period_line(event: &WebhookEvent) -> Option<&serde_json::Value> {
    event
        .data
        .object
        .pointer("/lines/data")?
        .as_array()?
        .iter()
        .find(|line| is_proration(line) != Some(true))
}

/// Whether an invoice line is a proration, where it says (older API versions on the line,
/// newer ones under its parent).
fn is_proration(line: &serde_json::Value) -> Option<bool> {
    line.pointer("/proration")
        .or_else(|| line.pointer("/parent/subscription_item_details/proration"))
        .and_then(|value| value.as_bool())
}

fn subscription_state(app: &App, event: &WebhookEvent) -> Result<StripeSubscriptionState, AppError> {
    let plan = plan_of(app, event, &["/items/data/0/price/id", "/plan/id"], &["/metadata/plan"])
        .ok_or_else(|| unknown_plan(event))?;
    let period_end = ["/current_period_end", "/items/data/0/current_period_end"]
        .iter()
        .find_map(|pointer| event.data.object.pointer(pointer).and_then(|v| v.as_i64()))
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0));
    Ok(StripeSubscriptionState {
        subscription_id: event.text("/id").ok_or_else(|| missing(event, "id"))?.to_owned(),
        customer_id: event
            .text("/customer")
            .ok_or_else(|| missing(event, "customer"))?
            .to_owned(),
        plan: plan.name.clone(),
        status: event
            .text("/status")
            .ok_or_else(|| missing(event, "status"))?
            .to_owned(),
        current_period_end: period_end,
        cancel_at_period_end: event
            .data
            .object
            .pointer("/cancel_at_period_end")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

async fn subscription_updated(app: &App, event: &WebhookEvent) -> Result<Outcome, AppError> {
    let Some(owner) = owner_of(app, event, &["/metadata/user_id"]).await? else {
        return Ok(Outcome::Unattributed);
    };
    let updated = subscription_state(app, event)?;
    change_subscription(app, event, owner, SubscriptionChange::Updated(updated)).await?;
    Ok(Outcome::Handled)
}

async fn subscription_deleted(app: &App, event: &WebhookEvent) -> Result<Outcome, AppError> {
    let Some(owner) = owner_of(app, event, &["/metadata/user_id"]).await? else {
        return Ok(Outcome::Unattributed);
    };
    let subscription_id = event.text("/id").ok_or_else(|| missing(event, "id"))?.to_owned();
    change_subscription(app, event, owner, SubscriptionChange::Ended { subscription_id }).await?;
    Ok(Outcome::Handled)
}
