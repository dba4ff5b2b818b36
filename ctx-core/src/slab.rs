//! A slab: a `Vec` whose vacant slots form a free list, so that insert and remove are O(1) and a
//! key stays valid until its entry is removed.
//!
//! Invariants (relied on by `tree.rs`):
//! - A key is returned by `insert` and names its entry until that entry is removed; removing a
//!   vacant or out-of-range key does nothing and returns `None`.
//! - When the last entry is removed, the storage is reset (freed if it had grown large), so a
//!   parent that once had a million children holds no memory for them once they are gone.
//! - `drain` empties the slab but keeps its storage: the caller (a cancel) frees it or hands a
//!   small one on to the next node it finishes.

const NONE: usize = usize::MAX;

/// Above this capacity, an emptied slab gives its memory back.
const KEEP_CAPACITY: usize = 64;

pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    next_free: usize,
    len: usize,
}

enum Entry<T> {
    Occupied(T),
    Vacant(usize),
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { entries: Vec::new(), next_free: NONE, len: 0 }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if self.next_free == NONE {
            self.entries.push(Entry::Occupied(value));
            return self.entries.len() - 1;
        }
        let key = self.next_free;
        match std::mem::replace(&mut self.entries[key], Entry::Occupied(value)) {
            Entry::Vacant(next) => self.next_free = next,
            Entry::Occupied(_) => unreachable!("the free list only holds vacant slots"),
        }
        key
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let slot = self.entries.get_mut(key)?;
        if matches!(slot, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(value) = std::mem::replace(slot, Entry::Vacant(self.next_free)) else {
            unreachable!("checked above");
        };
        self.next_free = key;
        self.len -= 1;
        if self.len == 0 {
            if self.entries.capacity() > KEEP_CAPACITY {
                self.entries = Vec::new();
            } else {
                self.entries.clear();
            }
            self.next_free = NONE;
        }
        Some(value)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes every entry out, leaving the slab empty. Its storage stays allocated (see
    /// [`capacity`](Slab::capacity)): a cancel hands a small emptied slab on instead of freeing it.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.next_free = NONE;
        self.len = 0;
        self.entries.drain(..).filter_map(|entry| match entry {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        })
    }

    /// How many entries the storage holds without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_stable_and_reused() {
        let mut slab = Slab::default();
        let a = slab.insert('a');
        let b = slab.insert('b');
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(a), None, "a removed key stays removed");
        let c = slab.insert('c');
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!(slab.get_mut(b), Some(&mut 'b'));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.remove(99), None);
    }

    #[test]
    fn emptied_slab_gives_memory_back() {
        let mut slab = Slab::default();
        let keys: Vec<_> = (0..1000).map(|i| slab.insert(i)).collect();
        for key in keys {
            slab.remove(key);
        }
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.entries.capacity(), 0);
    }

    #[test]
    fn drain_takes_only_occupied() {
        let mut slab = Slab::default();
        let a = slab.insert(1);
        slab.insert(2);
        slab.insert(3);
        slab.remove(a);
        let mut all: Vec<_> = slab.drain().collect();
        all.sort();
        assert_eq!(all, vec![2, 3]);
        assert_eq!(slab.len(), 0);
    }
}
