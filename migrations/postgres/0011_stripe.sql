-- Stripe webhook events already processed: a repeat is answered at once, without processing
-- it again. (Processing is idempotent on its own; this spares the work and tells the repeat.)
CREATE TABLE stripe_webhook_events
(
    event_id     text PRIMARY KEY,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Which user each Stripe customer is: written when a checkout completes, read to attribute
-- invoices and subscription changes that carry no user id of their own. Not a read model: it
-- is written in the webhook's request, before the events that follow from it.
CREATE TABLE stripe_customers
(
    customer_id text PRIMARY KEY,
    user_id     uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_customers_user_id ON stripe_customers (user_id);
