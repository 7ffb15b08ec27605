//! Rate limits: how many requests a client, an account or a user may make per window, and the
//! IETF `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers) that tell
//! clients where they stand.
//!
//! The counters live in this process for now ([`InProcessLimiter`], fixed windows), behind
//! [`RateLimiter`], which a shared store (Redis, Postgres) can implement for several replicas.
//! Each policy names what it counts; a limit of 0 turns a policy off.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Response};
use axum::middleware::Next;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `RateLimit-Policy`: the quota and window of the policy that applied.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of it, and when it resets.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A limit: `quota` requests per `window`, under a name clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Stable name, quoted in the headers (`auth-ip`, `api-user`, ...).
    pub name: &'static str,
    /// Requests allowed per window; 0 turns the policy off.
    pub quota: u32,
    /// The window.
    pub window: Duration,
}

/// Where one request leaves its key under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The policy.
    pub policy: Policy,
    /// Whether this request is within the quota.
    pub allowed: bool,
    /// Requests left in this window.
    pub remaining: u32,
    /// Until the window resets.
    pub reset: Duration,
}

impl Standing {
    /// Seconds until the window resets, rounded up (at least 1).
    pub fn reset_secs(&self) -> u64 {
        (self.reset.as_secs() + u64::from(self.reset.subsec_nanos() > 0)).max(1)
    }

    /// The two header values: `RateLimit-Policy` and `RateLimit`.
    pub fn header_values(&self) -> (String, String) {
        (
            format!(
                "\"{}\";q={};w={}",
                self.policy.name,
                self.policy.quota,
                self.policy.window.as_secs()
            ),
            format!("\"{}\";r={};t={}", self.policy.name, self.remaining, self.reset_secs()),
        )
    }
}

/// Counts requests per policy and key.
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `key` under `policy` and says whether it is allowed.
    fn hit(&self, policy: Policy, key: &str) -> Standing;
}

/// Fixed windows in a map, swept of finished windows as it grows.
#[derive(Default)]
pub struct InProcessLimiter {
    windows: Mutex<HashMap<(&'static str, String), Window>>,
}

/// One key's current window.
struct Window {
    started: Instant,
    length: Duration,
    count: u32,
}

/// More keys than this and finished windows are swept on the next hit.
const SWEEP_ABOVE: usize = 100_000;

impl RateLimiter for InProcessLimiter {
    fn hit(&self, policy: Policy, key: &str) -> Standing {
        self.hit_at(policy, key, Instant::now())
    }
}

impl InProcessLimiter {
    /// [`RateLimiter::hit`] at `now`.
    pub fn hit_at(&self, policy: Policy, key: &str, now: Instant) -> Standing {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= SWEEP_ABOVE {
            windows.retain(|_, window| now.duration_since(window.started) < window.length);
        }
        let window = windows.entry((policy.name, key.to_owned())).or_insert(Window {
            started: now,
            length: policy.window,
            count: 0,
        });
        if now.duration_since(window.started) >= policy.window {
            window.started = now;
            window.count = 0;
        }
        window.length = policy.window;
        window.count = window.count.saturating_add(1);
        Standing {
            policy,
            allowed: window.count <= policy.quota,
            remaining: policy.quota.saturating_sub(window.count),
            reset: policy.window.saturating_sub(now.duration_since(window.started)),
        }
    }
}

/// The policies, from configuration: requests per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Unauthenticated auth endpoints (register, login, refresh, mailed tokens), per client
    /// address, per minute.
    pub auth_per_ip_per_minute: u32,
    /// Login attempts and mail requests per account (e-mail address), per 15 minutes.
    pub auth_per_account_per_15_minutes: u32,
    /// Authenticated API requests per user, per minute.
    pub api_per_user_per_minute: u32,
    /// Uploads per user, per day.
    pub uploads_per_user_per_day: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            auth_per_ip_per_minute: 60,
            auth_per_account_per_15_minutes: 20,
            api_per_user_per_minute: 1_200,
            uploads_per_user_per_day: 200,
        }
    }
}

impl RateLimitSettings {
    /// Per client address on the unauthenticated auth endpoints.
    pub fn auth_ip(&self) -> Policy {
        Policy {
            name: "auth-ip",
            quota: self.auth_per_ip_per_minute,
            window: Duration::from_secs(60),
        }
    }

    /// Per account on logins and mailed-token requests.
    pub fn auth_account(&self) -> Policy {
        Policy {
            name: "auth-account",
            quota: self.auth_per_account_per_15_minutes,
            window: Duration::from_secs(15 * 60),
        }
    }

    /// Per user on the authenticated API.
    pub fn api_user(&self) -> Policy {
        Policy {
            name: "api-user",
            quota: self.api_per_user_per_minute,
            window: Duration::from_secs(60),
        }
    }

    /// Per user on uploads (the assets endpoint applies it).
    pub fn uploads_user(&self) -> Policy {
        Policy {
            name: "uploads-user",
            quota: self.uploads_per_user_per_day,
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// The key a client address counts under: the address itself for IPv4, its /64 for IPv6 (one
/// subscriber's allocation: counting each of its 2^64 addresses apart would limit nothing).
pub fn client_key(address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
    }
}

/// The standing a request reached under the policies that applied to it, kept so the answer
/// can carry the headers of the tightest one.
#[derive(Debug, Clone, Default)]
pub struct RequestLimits(Arc<Mutex<Option<Standing>>>);

impl RequestLimits {
    /// Records `standing`; the one with the fewest requests left is the one reported.
    pub fn record(&self, standing: Standing) {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none_or(|kept| standing.remaining < kept.remaining) {
            *slot = Some(standing);
        }
    }

    fn take(&self) -> Option<Standing> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// Middleware: gives each request a [`RequestLimits`] and puts the `RateLimit-Policy` and
/// `RateLimit` fields of the tightest policy on its answer.
pub async fn report_limits(mut request: Request, next: Next) -> Response<axum::body::Body> {
    let limits = RequestLimits::default();
    request.extensions_mut().insert(limits.clone());
    let mut response = next.run(request).await;
    if let Some(standing) = limits.take() {
        let (policy, state) = standing.header_values();
        if let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state)) {
            response.headers_mut().insert(RATELIMIT_POLICY, policy);
            response.headers_mut().insert(RATELIMIT, state);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_A_MINUTE: Policy = Policy {
        name: "test",
        quota: 5,
        window: Duration::from_secs(60),
    };

    #[test]
    fn the_quota_holds_per_key_and_the_headers_say_so() {
        let limiter = InProcessLimiter::default();
        for used in 1..=5 {
            let standing = limiter.hit(FIVE_A_MINUTE, "a");
            assert!(standing.allowed);
            assert_eq!(standing.remaining, 5 - used);
        }
        let over = limiter.hit(FIVE_A_MINUTE, "a");
        assert!(!over.allowed);
        assert_eq!(over.remaining, 0);
        assert!((59..=60).contains(&over.reset_secs()));
        let (policy, state) = over.header_values();
        assert_eq!(policy, "\"test\";q=5;w=60");
        assert!(state.starts_with("\"test\";r=0;t="));
        assert!(limiter.hit(FIVE_A_MINUTE, "b").allowed, "another key has its own count");
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let one: std::net::IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_64: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other_64: std::net::IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(one), client_key(same_64));
        assert_ne!(client_key(one), client_key(other_64));
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(client_key(mapped), "192.0.2.7");
    }

    #[test]
    fn a_new_window_starts_afresh() {
        let limiter = InProcessLimiter::default();
        let start = Instant::now();
        for _ in 0..6 {
            limiter.hit_at(FIVE_A_MINUTE, "a", start);
        }
        assert!(
            !limiter
                .hit_at(FIVE_A_MINUTE, "a", start + Duration::from_secs(59))
                .allowed
        );
        let next = limiter.hit_at(FIVE_A_MINUTE, "a", start + Duration::from_secs(60));
        assert!(next.allowed);
        assert_eq!(next.remaining, 4);
    }
}
