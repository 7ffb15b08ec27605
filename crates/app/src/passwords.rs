//! Password hashing with argon2id, off the async runtime and bounded in concurrency, so a burst
//! of logins cannot starve other requests of the cores.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use keyframe_domain::values::{Password, PasswordHash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct Argon2Settings {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Argon2Settings {
    /// OWASP's minimum for argon2id: m=19456 KiB, t=2, p=1. Production never goes below it.
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of nothing in particular, verified when the account does not exist, so a wrong
    /// e-mail costs the same time as a wrong password.
    dummy_hash: Arc<String>,
    /// How many guesses were verified against an account's real hash: what the lockout bounds.
    verified_against_accounts: Arc<AtomicU64>,
}

impl Passwords {
    /// A hasher with `settings`, running at most `max_concurrent` hashes at once.
    pub fn new(settings: Argon2Settings, max_concurrent: usize) -> Result<Self, argon2::Error> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)?;
        let dummy_hash = hasher(&params)
            .hash_password(b"keyframe-dummy-password-for-equal-timing")
            .map_err(|_| argon2::Error::OutOfMemory)?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash: Arc::new(dummy_hash),
            verified_against_accounts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A turn at hashing; while it waits, `keyframe_password_hashes_waiting` counts it.
    async fn permit(&self) -> anyhow::Result<tokio::sync::SemaphorePermit<'_>> {
        let waiting = metrics::gauge!("keyframe_password_hashes_waiting");
        waiting.increment(1.0);
        let permit = self.permits.acquire().await;
        waiting.decrement(1.0);
        Ok(permit?)
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> anyhow::Result<PasswordHash> {
        let params = self.params.clone();
        let _permit = self.permit().await?;
        let hash = tokio::task::spawn_blocking(move || {
            hasher(&params)
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
        })
        .await?
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
        Ok(PasswordHash(hash))
    }

    /// Whether `password` matches `hash`; with no hash, burns the same time and answers false.
    pub async fn verify(&self, password: String, hash: Option<PasswordHash>) -> anyhow::Result<bool> {
        let params = self.params.clone();
        let (hash, exists) = match hash {
            Some(hash) => {
                self.verified_against_accounts.fetch_add(1, Ordering::Relaxed);
                (hash.0, true)
            }
            None => (self.dummy_hash.as_ref().clone(), false),
        };
        let _permit = self.permit().await?;
        let matches = tokio::task::spawn_blocking(move || {
            // The hash carries its own parameters; `params` only matter for new hashes.
            hasher(&params)
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await?;
        Ok(matches && exists)
    }

    /// How many passwords this process verified against an account's real hash (not the
    /// dummy one) since it started.
    pub fn verified_against_accounts(&self) -> u64 {
        self.verified_against_accounts.load(Ordering::Relaxed)
    }
}

fn hasher(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(
            Argon2Settings {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            1,
        )
        .expect("params")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let passwords = cheap();
        let hash = passwords
            .hash(Password::parse("password", "correct horse battery staple", &[]).expect("ok"))
            .await;
        let hash = hash.expect("hash");
        assert!(hash.0.starts_with("$argon2id$"));
        assert!(
            passwords
                .verify("correct horse battery staple".to_owned(), Some(hash.clone()))
                .await
                .expect("ok")
        );
        assert!(
            !passwords
                .verify("correct horse battery stapler".to_owned(), Some(hash))
                .await
                .expect("ok")
        );
    }

    #[tokio::test]
    async fn verifying_without_an_account_is_always_false() {
        let passwords = cheap();
        assert!(
            !passwords
                .verify("keyframe-dummy-password-for-equal-timing".to_owned(), None)
                .await
                .expect("ok")
        );
    }
}
