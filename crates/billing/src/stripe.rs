//! Stripe: the signature of its webhooks, the events Keyframe reads from them, and the one API
//! call Keyframe makes (creating a Checkout Session).
//!
//! The signature scheme: header `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`; the signed
//! payload is `"{t}.{raw body}"`; the key is the endpoint secret's bytes as written
//! (`whsec_...`, not decoded); HMAC-SHA256 in hex, compared in constant time with every `v1`.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How far a signature's time may be from now: older (or newer) calls are refused, so a
/// captured call cannot be replayed later.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// Why a webhook call's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("the call is not signed (no Stripe-Signature header)")]
    Missing,
    /// The header lacks a time or a `v1` signature.
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    /// The signature's time is too far from now.
    #[error("the signature is more than {SIGNATURE_TOLERANCE_SECS} s from now")]
    Stale,
    /// No `v1` matches.
    #[error("the signature does not match")]
    Mismatch,
}

/// The `v1` signature of `payload` signed at `timestamp` with `secret`.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks `header` (the `Stripe-Signature` value) against `payload` and `secret` at `now`.
pub fn verify(header: Option<&str>, payload: &[u8], secret: &str, now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > SIGNATURE_TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = sign(secret, timestamp, payload);
    let matches = signatures
        .iter()
        .any(|signature| bool::from(signature.as_bytes().ct_eq(expected.as_bytes())));
    if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// A webhook event, as much as Keyframe reads of it.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEvent {
    /// `evt_...`: each is processed once.
    pub id: String,
    /// `invoice.paid`, ...
    #[serde(rename = "type")]
    pub event_type: String,
    /// When Stripe made it (Unix seconds).
    pub created: i64,
    /// The object it is about.
    pub data: WebhookData,
}

/// The object of a webhook event.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookData {
    /// A Checkout Session, an invoice or a subscription, by the event's type.
    pub object: serde_json::Value,
}

impl WebhookEvent {
    /// When Stripe made it.
    pub fn created_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.created, 0).unwrap_or_default()
    }

    /// A string field of the object, by JSON pointer (`/metadata/user_id`).
    pub fn text(&self, pointer: &str) -> Option<&str> {
        self.data
            .object
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The first of several places a field may be (Stripe moved some between API versions).
    pub fn first_text(&self, pointers: &[&str]) -> Option<&str> {
        pointers.iter().find_map(|pointer| self.text(pointer))
    }
}

/// How to reach Stripe.
#[derive(Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a test server.
    pub api_base: String,
    /// The secret API key (`sk_...`).
    pub secret_key: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// What a Checkout Session is for.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    /// The buyer: a user's id, or an organisation's.
    pub user_id: &'a str,
    /// `user` or `organization`.
    pub owner_kind: &'a str,
    /// The plan's name, kept on the session and the subscription.
    pub plan: &'a str,
    /// The Stripe price.
    pub price_id: &'a str,
    /// The buyer's Stripe customer, when Keyframe knows it from an earlier checkout.
    pub customer_id: Option<&'a str>,
    /// Where Stripe sends the buyer after paying.
    pub success_url: &'a str,
    /// Where Stripe sends the buyer who turns back.
    pub cancel_url: &'a str,
}

/// A created Checkout Session.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    /// `cs_...`.
    pub id: String,
    /// Where the buyer pays.
    pub url: String,
}

/// Why a Stripe call failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe refused the request (4xx): its message.
    #[error("Stripe refused the request ({status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Stripe's message.
        message: String,
    },
    /// Stripe could not be reached, or kept failing (5xx, 429), after the retries.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
}

/// Attempts of one Stripe call: retries reuse the idempotency key, so Stripe makes one object.
const ATTEMPTS: u32 = 3;

/// Stripe's HTTP API.
#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    config: StripeConfig,
}

impl StripeClient {
    /// A client; the process's TLS provider must be installed first.
    pub fn new(config: StripeConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Self { http, config }
    }

    /// Creates a subscription Checkout Session. `idempotency_key` names this purchase: a retry
    /// with the same key, here or from the client, gets the same session back.
    pub async fn create_checkout_session(
        &self,
        request: &CheckoutRequest<'_>,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let mut form = vec![
            ("mode", "subscription"),
            ("line_items[0][price]", request.price_id),
            ("line_items[0][quantity]", "1"),
            ("success_url", request.success_url),
            ("cancel_url", request.cancel_url),
            ("client_reference_id", request.user_id),
            ("metadata[user_id]", request.user_id),
            ("metadata[plan]", request.plan),
            ("subscription_data[metadata][user_id]", request.user_id),
            ("subscription_data[metadata][plan]", request.plan),
        ];
        // Only an organisation's says so: a user's session reads as it always did.
        if request.owner_kind != "user" {
            form.push(("metadata[owner_kind]", request.owner_kind));
            form.push(("subscription_data[metadata][owner_kind]", request.owner_kind));
        }
        if let Some(customer) = request.customer_id {
            form.push(("customer", customer));
        }
        let url = format!("{}/v1/checkout/sessions", self.config.api_base.trim_end_matches('/'));
        let mut pause = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .post(&url)
                .bearer_auth(&self.config.secret_key)
                .header("Idempotency-Key", idempotency_key)
                .form(&form)
                .send()
                .await;
            let failure = match sent {
                Ok(response) if response.status().is_success() => {
                    return response
                        .json::<CheckoutSession>()
                        .await
                        .map_err(|e| StripeError::Unavailable(format!("an unexpected answer: {e}")));
                }
                Ok(response) if response.status().is_client_error() && response.status().as_u16() != 429 => {
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let message = body
                        .pointer("/error/message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("no message")
                        .to_owned();
                    return Err(StripeError::Rejected { status, message });
                }
                Ok(response) => format!("HTTP {}", response.status()),
                Err(error) => error.to_string(),
            };
            if attempt >= ATTEMPTS {
                return Err(StripeError::Unavailable(failure));
            }
            tracing::warn!(attempt, error = %failure, "creating a Checkout Session failed; trying again");
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_BODY: &str = r#"{"id":"evt_test_webhook","object":"event","type":"checkout.session.completed"}"#;
    const VECTOR_SIGNATURE: &str = "1fa73ff7286785daa8168695a709e92ce31d02a9202648cb27a1c5f2e233f517";

    #[test]
    fn the_design_notes_test_vector_signs_and_verifies() {
        assert_eq!(
            sign("whsec_test_secret", 1_700_000_000, VECTOR_BODY.as_bytes()),
            VECTOR_SIGNATURE
        );
        let header = format!("t=1700000000,v1={VECTOR_SIGNATURE}");
        assert_eq!(
            verify(
                Some(&header),
                VECTOR_BODY.as_bytes(),
                "whsec_test_secret",
                1_700_000_100
            ),
            Ok(())
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let header = format!("t=1700000000,v1={},v1={VECTOR_SIGNATURE},v0=ignored", "0".repeat(64));
        assert_eq!(
            verify(
                Some(&header),
                VECTOR_BODY.as_bytes(),
                "whsec_test_secret",
                1_700_000_000
            ),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_or_secret_does_not_verify() {
        let header = format!("t=1700000000,v1={VECTOR_SIGNATURE}");
        let body = VECTOR_BODY.replace("checkout", "invoice");
        assert_eq!(
            verify(Some(&header), body.as_bytes(), "whsec_test_secret", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), VECTOR_BODY.as_bytes(), "whsec_other", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_older_than_five_minutes_is_stale() {
        let header = format!("t=1700000000,v1={VECTOR_SIGNATURE}");
        let body = VECTOR_BODY.as_bytes();
        assert_eq!(verify(Some(&header), body, "whsec_test_secret", 1_700_000_300), Ok(()));
        assert_eq!(
            verify(Some(&header), body, "whsec_test_secret", 1_700_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&header), body, "whsec_test_secret", 1_699_999_000),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn unsigned_and_malformed_headers_are_refused() {
        let body = VECTOR_BODY.as_bytes();
        assert_eq!(verify(None, body, "whsec_test_secret", 0), Err(SignatureError::Missing));
        let extreme = format!("t={},v1={VECTOR_SIGNATURE}", i64::MIN);
        assert_eq!(
            verify(Some(&extreme), body, "whsec_test_secret", 1_700_000_000),
            Err(SignatureError::Stale)
        );
        for header in ["", "t=1700000000", "v1=abc", "t=soon,v1=abc"] {
            assert_eq!(
                verify(Some(header), body, "whsec_test_secret", 1_700_000_000),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }
}
