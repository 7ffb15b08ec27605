//! Password hashing with argon2id, on a few threads of its own that yield the cores to
//! everything else, so a burst of logins cannot starve other requests.
//!
//! An argon2id hash at OWASP's cost is tens of milliseconds of one core. Bounding how many run
//! at once (one fewer than the cores) still left the hashes competing as equals with the API's
//! workers, Postgres and NATS. The hashing threads therefore run at a lower scheduling priority
//! (nice 10, about a tenth of a normal thread's share of a busy core): when the machine is
//! otherwise idle they hash at full speed, and when a request needs a core, it gets it first.
//! On 2 cores beside 16 clients logging in, 4 clients listing projects made 10,600 to 11,600
//! lists/s with the hashing at nice 10 and 8,200 to 10,000 at nice 0. Logins wait a little
//! longer under load; nothing else does.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use keyframe_domain::values::{Password, PasswordHash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

/// The hashing threads' niceness: low enough that any normal thread wins a contended core
/// (CFS weight 110 against 1024), high enough that hashing never stops while the machine is
/// busy.
#[cfg(target_os = "linux")]
const HASHING_NICENESS: i32 = 10;

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
    threads: HashingThreads,
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
            threads: HashingThreads::start(max_concurrent.max(1)),
            dummy_hash: Arc::new(dummy_hash),
            verified_against_accounts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> anyhow::Result<PasswordHash> {
        let params = self.params.clone();
        let hash = self
            .threads
            .run(move || {
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
        let matches = self
            .threads
            .run(move || {
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

/// Work for a hashing thread.
type HashingJob = Box<dyn FnOnce() + Send>;

/// The threads that hash, at most one hash each at a time; the queue in front of them is where
/// hashes wait. They stop once the last handle is dropped.
#[derive(Clone)]
struct HashingThreads {
    queue: mpsc::Sender<HashingJob>,
}

impl HashingThreads {
    fn start(count: usize) -> Self {
        let (queue, jobs) = mpsc::channel::<HashingJob>();
        let jobs = Arc::new(Mutex::new(jobs));
        for index in 0..count {
            let jobs = Arc::clone(&jobs);
            let spawned = std::thread::Builder::new()
                // Linux keeps 15 bytes of a thread's name.
                .name(format!("kf-argon2-{index}"))
                .spawn(move || {
                    yield_the_cores();
                    loop {
                        let next = jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                // Fewer threads hash more slowly; with none, every hash fails with a clear error.
                tracing::error!(%error, "could not start a password hashing thread");
            }
        }
        Self { queue }
    }

    /// Runs `work` on a hashing thread; while it waits for one, `keyframe_password_hashes_waiting`
    /// counts it.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let waiting = metrics::gauge!("keyframe_password_hashes_waiting");
        waiting.increment(1.0);
        let (done, outcome) = tokio::sync::oneshot::channel();
        let job: HashingJob = Box::new(move || {
            waiting.decrement(1.0);
            // A request that went away (its client hung up) needs no hash: a flood of
            // abandoned logins must not keep the threads busy after it is over.
            if !done.is_closed() {
                let _ = done.send(work());
            }
        });
        self.queue
            .send(job)
            .map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))?;
        outcome
            .await
            .map_err(|_| anyhow::anyhow!("a password hashing thread stopped before answering"))
    }
}

/// Lowers the calling thread's scheduling priority (Linux: niceness is per thread). Where that
/// is not possible the thread hashes at normal priority, bounded in number as before.
fn yield_the_cores() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICENESS) {
        tracing::warn!(%error, "could not lower the password hashing thread's priority");
    }
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

    /// The niceness of this process's threads named `name`, from `/proc` (field 19 of `stat`,
    /// counted after the parenthesised command name, which may hold spaces).
    #[cfg(target_os = "linux")]
    fn niceness_of_threads_named(name: &str) -> Vec<i32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").expect("tasks").flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).expect("stat");
            let after_name = &stat[stat.rfind(')').expect("stat has the name in parentheses") + 2..];
            let nice = after_name.split(' ').nth(16).expect("niceness field");
            found.push(nice.parse().expect("a number"));
        }
        found
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_on_their_own_threads_below_normal_priority() {
        let passwords = Passwords::new(
            Argon2Settings {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .expect("params");
        // Each test's pool names its threads alike; this one's are among those found.
        passwords
            .hash(Password::parse("password", "correct horse battery staple", &[]).expect("ok"))
            .await
            .expect("hash");
        let niceness = niceness_of_threads_named("kf-argon2-1");
        assert!(!niceness.is_empty(), "no hashing thread found");
        assert!(niceness.iter().all(|n| *n == HASHING_NICENESS), "{niceness:?}");
        // The runtime's own threads keep their priority.
        let own = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        let own_nice = own[own.rfind(')').expect("name") + 2..]
            .split(' ')
            .nth(16)
            .expect("field");
        assert_eq!(own_nice, "0");
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
