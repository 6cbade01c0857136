//! A small TTL cache of fetched feature rows. Every entry lives equally long, so the
//! insertion queue is also the expiry queue: evicting from its front drops the oldest first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lookup::Row;

pub(crate) struct TtlCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rows: HashMap<String, (Instant, Row)>,
    queue: VecDeque<(Instant, String)>,
}

impl TtlCache {
    /// None when `ttl` or `capacity` is zero (no caching).
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Option<TtlCache> {
        (!ttl.is_zero() && capacity > 0).then(|| TtlCache {
            ttl,
            capacity,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps inconsistent: each update is one insert.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Row> {
        let inner = self.lock();
        inner
            .rows
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, row)| row.clone())
    }

    pub(crate) fn put(&self, key: String, row: Row) {
        let now = Instant::now();
        let mut inner = self.lock();
        while let Some((expires, _)) = inner.queue.front() {
            if *expires > now && inner.queue.len() < self.capacity {
                break;
            }
            if let Some((expires, old)) = inner.queue.pop_front() {
                // A key put again since has a later expiry: that entry stays.
                if inner.rows.get(&old).is_some_and(|(e, _)| *e == expires) {
                    inner.rows.remove(&old);
                }
            }
        }
        let expires = now + self.ttl;
        inner.queue.push_back((expires, key.clone()));
        inner.rows.insert(key, (expires, row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_oldest_go_first() {
        let cache = TtlCache::new(Duration::from_millis(50), 2).expect("enabled");
        cache.put("a".into(), vec![Ok(1.0)]);
        cache.put("b".into(), vec![Ok(2.0)]);
        cache.put("c".into(), vec![Ok(3.0)]);
        assert!(
            cache.get("a").is_none(),
            "over capacity: the oldest is evicted"
        );
        assert_eq!(cache.get("c"), Some(vec![Ok(3.0)]));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("b").is_none() && cache.get("c").is_none());
        assert!(TtlCache::new(Duration::ZERO, 10).is_none());
    }

    #[test]
    fn a_key_put_again_outlives_its_first_entry() {
        let cache = TtlCache::new(Duration::from_secs(60), 2).expect("enabled");
        cache.put("a".into(), vec![Ok(1.0)]);
        cache.put("a".into(), vec![Ok(2.0)]);
        cache.put("b".into(), vec![Ok(3.0)]);
        // The first "a" entry is evicted from the queue; the map keeps the newer value.
        assert_eq!(cache.get("a"), Some(vec![Ok(2.0)]));
    }
}
