//! Turn-taking within a process: work on one aggregate waits for the work before it instead of
//! racing it. A lock per stripe of aggregate ids, so unrelated aggregates rarely wait on each
//! other and the locks cost a fixed amount of memory however many aggregates there are.

use std::hash::{BuildHasher, BuildHasherDefault};

/// Stripes of aggregate ids: enough that unrelated aggregates rarely share one.
const STRIPES: usize = 1_024;

/// One queue per stripe of aggregate ids.
pub struct Turns {
    stripes: Box<[tokio::sync::Mutex<()>]>,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl Turns {
    /// Waits for `id`'s turn; it lasts until the guard drops. Not reentrant: holding a turn
    /// and asking for the same id's again waits forever.
    pub async fn take(&self, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id);
        self.stripes[(hash % self.stripes.len() as u64) as usize].lock().await
    }
}
