//! Per-replica caches of what is read on nearly every request (live connector keys, interfaces,
//! whether an interface's agent is online), each entry believed for [`TTL`]. A change made
//! through this replica clears what it touches at once; one made through another replica or the
//! CLI is seen here within that second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a cached entry is believed.
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// Entries at most; past it a cache starts over (what is cached is few: keys, interfaces).
const MAX: usize = 1024;

/// Rows by key, each believed for [`TTL`]. Cheap to clone; clones share the entries.
#[derive(Debug)]
pub(crate) struct TtlCache<V>(Arc<Mutex<HashMap<String, (Instant, V)>>>);

impl<V> Default for TtlCache<V> {
    fn default() -> Self {
        TtlCache(Arc::default())
    }
}

impl<V> Clone for TtlCache<V> {
    fn clone(&self) -> Self {
        TtlCache(Arc::clone(&self.0))
    }
}

impl<V: Clone> TtlCache<V> {
    /// The row cached under `key`, if it is younger than [`TTL`].
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.0.lock().expect("cache poisoned");
        let (at, value) = entries.get(key)?;
        (at.elapsed() < TTL).then(|| value.clone())
    }

    pub fn put(&self, key: &str, value: &V) {
        let mut entries = self.0.lock().expect("cache poisoned");
        if entries.len() >= MAX {
            entries.clear();
        }
        entries.insert(key.to_owned(), (Instant::now(), value.clone()));
    }

    /// Forgets every row `keep` says no to.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        let mut entries = self.0.lock().expect("cache poisoned");
        entries.retain(|_, (_, value)| keep(value));
    }

    pub fn remove(&self, key: &str) {
        self.0.lock().expect("cache poisoned").remove(key);
    }

    pub fn clear(&self) {
        self.0.lock().expect("cache poisoned").clear();
    }
}
