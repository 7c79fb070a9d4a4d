//! A least-recently-used cache of embeddings, bounded in bytes rather than entries so
//! that a few long texts cannot blow the budget that many short ones would fit in.

use lru::LruCache;
use std::sync::Arc;

/// What one entry costs: the vector, the key text, and bookkeeping.
pub(crate) fn entry_bytes(text: &str, dim: usize) -> usize {
    const OVERHEAD: usize = 64;
    text.len() + dim * std::mem::size_of::<f32>() + OVERHEAD
}

pub(crate) struct EmbeddingCache {
    entries: LruCache<Arc<str>, crate::engine::embedding::Vector>,
    bytes: usize,
    capacity_bytes: usize,
}

impl EmbeddingCache {
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        Self {
            entries: LruCache::unbounded(),
            bytes: 0,
            capacity_bytes,
        }
    }

    pub(crate) fn get(&mut self, text: &str) -> Option<crate::engine::embedding::Vector> {
        self.entries.get(text).cloned()
    }

    pub(crate) fn insert(&mut self, text: Arc<str>, vector: crate::engine::embedding::Vector) {
        let cost = entry_bytes(&text, vector.len());
        if cost > self.capacity_bytes {
            return;
        }
        let replaced = self
            .entries
            .peek(&*text)
            .map(|old| entry_bytes(&text, old.len()));
        self.entries.put(text, vector);
        if let Some(old_cost) = replaced {
            self.bytes -= old_cost;
        }
        self.bytes += cost;
        self.evict_to(self.capacity_bytes);
    }

    /// Drop least recently used entries until at most `limit` bytes remain.
    pub(crate) fn evict_to(&mut self, limit: usize) -> usize {
        let before = self.bytes;
        while self.bytes > limit {
            match self.entries.pop_lru() {
                Some((k, v)) => self.bytes -= entry_bytes(&k, v.len()),
                None => break,
            }
        }
        before - self.bytes
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
// Vectors are stored and handed back, never computed: equal means identical.
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    fn v(x: f32, dim: usize) -> crate::engine::embedding::Vector {
        crate::engine::embedding::Embedded::new(
            vec![x; dim],
            crate::engine::embedding::Read::default(),
        )
    }

    #[test]
    fn hit_after_insert_and_bytes_accounted() {
        let mut c = EmbeddingCache::new(1 << 20);
        c.insert("hello".into(), v(1.0, 4));
        assert_eq!(c.get("hello").unwrap()[0], 1.0);
        assert!(c.get("other").is_none());
        assert_eq!(c.bytes(), entry_bytes("hello", 4));
    }

    #[test]
    fn evicts_least_recently_used_within_byte_budget() {
        let per = entry_bytes("a", 8);
        let mut c = EmbeddingCache::new(per * 2);
        c.insert("a".into(), v(1.0, 8));
        c.insert("b".into(), v(2.0, 8));
        assert!(c.get("a").is_some()); // a is now more recent than b
        c.insert("c".into(), v(3.0, 8));
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some() && c.get("c").is_some());
        assert!(c.bytes() <= c.capacity_bytes());
    }

    #[test]
    fn replacing_a_key_does_not_double_count() {
        let mut c = EmbeddingCache::new(1 << 20);
        c.insert("a".into(), v(1.0, 8));
        c.insert("a".into(), v(2.0, 8));
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), entry_bytes("a", 8));
        assert_eq!(c.get("a").unwrap()[0], 2.0);
    }

    #[test]
    fn entry_larger_than_capacity_is_not_stored() {
        let mut c = EmbeddingCache::new(10);
        c.insert("a".into(), v(1.0, 8));
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn shrinking_and_clearing_free_bytes() {
        let mut c = EmbeddingCache::new(1 << 20);
        for i in 0..10 {
            c.insert(format!("t{i}").into(), v(i as f32, 8));
        }
        let freed = c.evict_to(entry_bytes("t0", 8) * 3);
        assert!(freed > 0);
        assert_eq!(c.len(), 3);
        assert!(c.get("t9").is_some());
        c.clear();
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }
}
