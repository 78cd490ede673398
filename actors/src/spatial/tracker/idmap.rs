//! The identities of a shard by global id: hashed lookups, iteration in id
//! order.
//!
//! A cycle looks identities up by id tens of thousands of times (every
//! candidate pair, every fused observation), while ids are handed out in
//! increasing order and leave one by one. An ordered tree pays a descent per
//! lookup; here the entries sit in one vector sorted by id, a hash index
//! finds an entry's slot, removal leaves a hole that a later compaction
//! closes, and iteration walks the vector in id order, so everything that
//! iterates (output, expiry, checkpoints) sees the same order as with a
//! `BTreeMap`. It serialises as a map in id order, exactly as a `BTreeMap`
//! does, so checkpoints keep their bytes.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hashes one `u64` id with a multiplication: ids are small consecutive
/// integers chosen by the tracker, not input from outside the process.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Holes (removed entries) tolerated before the vector is compacted: at
/// least this many and more than the live entries.
const MIN_HOLES: usize = 64;

/// A map from id to `V` that iterates in id order (see the module doc).
#[derive(Debug, Clone)]
pub(super) struct IdMap<V> {
    /// Entries sorted by id; `None` where one was removed.
    entries: Vec<(u64, Option<V>)>,
    /// Slot in `entries` of each live id.
    index: HashMap<u64, usize, BuildHasherDefault<IdHasher>>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap {
            entries: Vec::new(),
            index: HashMap::default(),
        }
    }
}

impl<V> IdMap<V> {
    /// An empty map.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Live entries.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether `id` is present.
    pub(super) fn contains_key(&self, id: &u64) -> bool {
        self.index.contains_key(id)
    }

    /// The value of `id`.
    pub(super) fn get(&self, id: &u64) -> Option<&V> {
        let &i = self.index.get(id)?;
        self.entries[i].1.as_ref()
    }

    /// The value of `id`, mutable.
    pub(super) fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        let &i = self.index.get(id)?;
        self.entries[i].1.as_mut()
    }

    /// Sets `id` to `v`; returns the value it replaces.
    pub(super) fn insert(&mut self, id: u64, v: V) -> Option<V> {
        if let Some(&i) = self.index.get(&id) {
            return self.entries[i].1.replace(v);
        }
        if self.entries.last().is_none_or(|(last, _)| *last < id) {
            self.index.insert(id, self.entries.len());
            self.entries.push((id, Some(v)));
            return None;
        }
        // An id below the largest: only when state is rebuilt out of order.
        let at = self.entries.partition_point(|(k, _)| *k < id);
        if self.entries[at].0 == id {
            // A hole of this id: fill it.
            self.entries[at].1 = Some(v);
            self.index.insert(id, at);
        } else {
            self.entries.insert(at, (id, Some(v)));
            self.reindex();
        }
        None
    }

    /// Removes `id`; returns its value.
    pub(super) fn remove(&mut self, id: &u64) -> Option<V> {
        let i = self.index.remove(id)?;
        let v = self.entries[i].1.take();
        let holes = self.entries.len() - self.index.len();
        if holes >= MIN_HOLES && holes > self.index.len() {
            self.entries.retain(|(_, v)| v.is_some());
            self.reindex();
        }
        v
    }

    /// Live entries in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.into_iter()
    }

    /// Live ids in order.
    #[cfg(test)]
    pub(super) fn keys(&self) -> impl Iterator<Item = &u64> {
        self.iter().map(|(k, _)| k)
    }

    /// Live values in id order.
    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if v.is_some() {
                self.index.insert(*k, i);
            }
        }
    }
}

/// A live entry of a slot, if it holds one.
fn live<V>((k, v): &(u64, Option<V>)) -> Option<(&u64, &V)> {
    v.as_ref().map(|v| (k, v))
}

impl<'a, V> IntoIterator for &'a IdMap<V> {
    type Item = (&'a u64, &'a V);
    type IntoIter = std::iter::FilterMap<
        std::slice::Iter<'a, (u64, Option<V>)>,
        fn(&'a (u64, Option<V>)) -> Option<(&'a u64, &'a V)>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().filter_map(live)
    }
}

impl<V: Serialize> Serialize for IdMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for IdMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<u64, V>::deserialize(d)?;
        let mut out = IdMap::new();
        for (k, v) in m {
            out.insert(k, v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..300, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u64..300).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Any sequence of inserts and removals leaves the same contents, in
        /// the same order, as a `BTreeMap`, and serialises to the same bytes.
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec(op(), 0..600)) {
            let mut a = IdMap::new();
            let mut b = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => prop_assert_eq!(a.insert(k, v), b.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(a.remove(&k), b.remove(&k)),
                }
                prop_assert_eq!(a.len(), b.len());
            }
            prop_assert!(a.iter().eq(b.iter()));
            for k in 0..300u64 {
                prop_assert_eq!(a.get(&k), b.get(&k));
                prop_assert_eq!(a.contains_key(&k), b.contains_key(&k));
            }
            let bytes = rmp_serde::to_vec(&a).unwrap();
            prop_assert_eq!(&bytes, &rmp_serde::to_vec(&b).unwrap());
            let back: IdMap<u32> = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert!(back.iter().eq(b.iter()));
        }
    }

    #[test]
    fn ascending_ids_with_churn_stay_compact() {
        let mut m = IdMap::new();
        for id in 0..10_000u64 {
            m.insert(id, id);
            if id >= 100 {
                assert_eq!(m.remove(&(id - 100)), Some(id - 99));
            }
            if let Some(v) = m.get_mut(&id) {
                *v += 1;
            }
        }
        assert_eq!(m.len(), 100);
        assert!(
            m.entries.len() <= 2 * 100 + MIN_HOLES,
            "{}",
            m.entries.len()
        );
        assert!(m.keys().copied().eq(9_900..10_000));
        assert!(m.values().copied().eq(9_901..10_001));
    }
}
