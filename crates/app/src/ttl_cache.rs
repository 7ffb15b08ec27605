//! Answers trusted for a while, shared by every request of a process: what the session guard
//! and the membership guard learned from the event store, each kept for their TTL.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// More entries than this and the stale ones are swept out on the next insert.
const SWEEP_ABOVE: usize = 50_000;

/// Values learned at some instant, trusted for a TTL given on each read.
pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key` if it was learned less than `ttl` ago, or whatever its age when
    /// `forever` says it cannot change any more.
    pub(crate) fn get(&self, key: &K, ttl: Duration, forever: impl Fn(&V) -> bool) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (checked, value) = entries.get(key)?;
        (forever(value) || checked.elapsed() < ttl).then(|| value.clone())
    }

    /// Remembers `value` for `key` as of now.
    pub(crate) fn put(&self, key: K, value: V, ttl: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= SWEEP_ABOVE {
            entries.retain(|_, (checked, _)| checked.elapsed() < ttl);
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Forgets `key`: the next read goes to the source.
    pub(crate) fn forget(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}
