//! [`SmallMap`]: a map for the few entries a MAC has (its routes per VTEP, per address): one
//! entry in place, no allocation; more spill to the heap. A `BTreeMap` per MAC cost about a
//! kilobyte a MAC in nodes (measured with 100,000 remote MACs); this costs the entries.
//!
//! Contract: a key is held once; lookups are linear (a MAC has one or two VTEPs, a VTEP one or
//! two routes for it).

use smallvec::SmallVec;

/// A small map, in insertion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SmallMap<K, V>(SmallVec<[(K, V); 1]>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(SmallVec::new())
    }
}

impl<K: PartialEq + Copy, V> SmallMap<K, V> {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(super) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(super) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; the value it had.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.get_mut(&key) {
            Some(v) => Some(std::mem::replace(v, value)),
            None => {
                self.0.push((key, value));
                None
            }
        }
    }

    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// The value of `key`, made with `V::default()` if it has none.
    pub(super) fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let i = match self.0.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.0.push((key, V::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.0.iter().map(|(k, _)| k)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.0.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let mut m: SmallMap<u8, u32> = SmallMap::default();
        assert!(m.is_empty());
        assert_eq!(m.insert(1, 10), None);
        assert_eq!(m.insert(2, 20), None, "a second entry spills");
        assert_eq!(m.insert(1, 11), Some(10));
        assert_eq!(
            (m.get(&1), m.get(&2), m.get(&3)),
            (Some(&11), Some(&20), None)
        );
        *m.get_or_default(3) += 5;
        *m.get_or_default(3) += 5;
        assert_eq!(m.get(&3), Some(&10));
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(m.remove(&2), Some(20));
        assert_eq!(m.remove(&2), None);
        assert!(m.contains_key(&1) && !m.contains_key(&2));
        assert_eq!(m.values().sum::<u32>(), 21);
        assert_eq!(m.iter().count(), 2);
    }
}
