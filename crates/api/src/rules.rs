//! The bounds the API holds requests to that no domain value type owns: the routes check them
//! and the OpenAPI document states them (see `openapi::fields`), from these same constants.

/// Largest page of a list.
pub const MAX_PAGE: i64 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 20;
/// Most credits an administrator grants at once.
pub const GRANT_MAX_CREDITS: i64 = 1_000_000;

/// The largest monthly credit limit an owner may give a member (a trillion: no real limit is
/// near it, and sums of limits stay far from overflowing).
pub const CREDIT_LIMIT_MAX: i64 = 1_000_000_000_000;
/// Longest client idempotency key.
pub const IDEMPOTENCY_KEY_MAX: usize = 200;
