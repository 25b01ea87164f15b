//! A map whose copies share structure: the entries live in a fixed number of shards behind
//! `Arc`s, so a copy costs one `Arc` clone per shard and a change afterwards copies only the
//! shard it touches. Catalog snapshots are handed to sessions as immutable values and a new
//! one is derived on every change; this keeps that proportional to the change, not to the
//! cache.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    sync::Arc,
};

/// Enough that a shard of a large cache is small, few enough that a copy is cheap.
const SHARDS: usize = 64;

pub struct Shards<K, V> {
    hasher: RandomState,
    shards: Vec<Arc<HashMap<K, V>>>,
    len: usize,
}

impl<K, V> Clone for Shards<K, V> {
    fn clone(&self) -> Self {
        Self {
            hasher: self.hasher.clone(),
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for Shards<K, V> {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Shards<K, V> {
    fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard_of(key)].get(key)
    }

    pub fn insert(&mut self, key: K, value: V) {
        let shard = self.shard_of(&key);
        if Arc::make_mut(&mut self.shards[shard])
            .insert(key, value)
            .is_none()
        {
            self.len += 1;
        }
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard_of(key);
        // Only a shard that holds the key is copied.
        if self.shards[shard].contains_key(key) {
            Arc::make_mut(&mut self.shards[shard]).remove(key);
            self.len -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_independent_and_shares_untouched_shards() {
        let mut first: Shards<u32, u32> = Shards::default();
        for key in 0..1000 {
            first.insert(key, key);
        }
        let mut second = first.clone();
        second.insert(5, 50);
        second.remove(&6);
        second.remove(&100_000);
        assert_eq!((first.get(&5), first.get(&6)), (Some(&5), Some(&6)));
        assert_eq!((second.get(&5), second.get(&6)), (Some(&50), None));
        assert_eq!((first.len(), second.len()), (1000, 999));
        let shared = first
            .shards
            .iter()
            .zip(&second.shards)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(shared >= SHARDS - 2, "only touched shards are copied");
    }
}
