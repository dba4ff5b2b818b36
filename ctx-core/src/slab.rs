//! A slab: storage whose vacant slots form free lists, so that insert and remove are O(1) and a
//! key stays valid until its entry is removed; and which gives memory back after a burst.
//!
//! # Why pages
//! A parent's dependents live here, and each child keeps its key (`tree.rs`, invariant 5): an
//! entry can never move, so a slab cannot compact itself the way a `Vec` shrinks. A flat `Vec`
//! of slots therefore kept its peak size while any entry lived: one survivor among a million
//! children held 25,175,289 bytes (`tests/shrink.rs`). So the key space is cut into pages of
//! [`PAGE`] slots (a key is `page << PAGE_BITS | offset`), each with its own buffer and free
//! list, and a page whose last entry goes away frees its buffer. After a burst, what stays is one
//! page buffer per page that still has an entry, plus a 24-byte header per page up to the last
//! such page (trailing empty pages are dropped with their headers, but for one spare) and 4
//! bytes per page on the open stack: one survivor among a million children now leaves 24,728
//! bytes (the first key) to 53,336 bytes (a middle or the last key) behind, its node included.
//!
//! Page 0 lives inline and is tried first: a parent with at most [`PAGE`] dependents works as a
//! plain `Vec` slab did, with one buffer and no page lookup (it grows from one slot, so a node
//! with one child or one waiter holds 24 bytes for it, not 96); pages 1 and up sit behind one
//! box allocated when page 0 is first full.
//!
//! # Why O(1) amortised
//! - Page 0's buffer, and the buffer of a page that had been freed, grows by doubling up to
//!   [`PAGE`] slots: O(1) per insert. A page added when every page is full gets its whole buffer
//!   at once (O(`PAGE`) to link its slots), and the next page is added only after it is full in
//!   turn (or after the spare before it is), so at least `PAGE` inserts pay for each page added.
//! - A page's buffer is freed when its last entry goes, if it has more than [`KEEP_CAPACITY`]
//!   slots; freeing costs O(slots), charged to the inserts that filled or grew it. A small
//!   buffer is kept, so a page whose count goes from one to none and back (the usual life of a
//!   parent with one child at a time) allocates nothing.
//! - Insert takes the page with room on top of a stack of open pages in O(1); a page enters the
//!   stack when it stops being full (once) and leaves it when it fills up, which happens on top,
//!   where inserts go. Dropped pages leave stale entries behind, popped when met: each was
//!   pushed once.
//! - Trailing empty pages are dropped, all but one (the spare): a count that goes back and
//!   forth across a page boundary reuses the spare instead of adding and dropping a page each
//!   time. The header and stack `Vec`s shrink to twice their length when they fall below a
//!   quarter full: O(1) per page dropped, as doubling is per page added.
//!
//! # Invariants (relied on by `tree.rs`)
//! - A key is returned by `insert` and names its entry until that entry is removed; removing a
//!   vacant or out-of-range key does nothing and returns `None`.
//! - Every page `p >= 1` that is not full is on the open stack exactly once; every other entry of
//!   the stack is stale (at least the number of pages), and the stack holds no stale entry when a
//!   page is added (so a stale entry never names a later page).
//! - At most one trailing page is empty. Once every entry is removed, the box of pages is freed,
//!   so an empty slab holds at most page 0's small buffer.
//! - `drain` empties the slab and frees pages 1 and up, but keeps page 0's buffer (all vacant,
//!   linked in order): the caller (a cancel) frees it or hands a small one on to the next node it
//!   finishes (`tree.rs`, `SPARE_CAPACITY`).

use std::mem;

/// A key's low bits are its offset within its page.
const PAGE_BITS: u32 = 10;
/// Slots per page: small enough that a page pinned by one survivor is 24 KiB, large enough that
/// the headers of a million-entry burst take 24 KiB.
const PAGE: usize = 1 << PAGE_BITS;
/// Ends a page's free list.
const NO_SLOT: u16 = u16::MAX;
/// An emptied page keeps a buffer of at most this many slots.
const KEEP_CAPACITY: usize = 64;

const _: () = assert!(PAGE < NO_SLOT as usize);

pub(crate) struct Slab<T> {
    /// Page 0: keys `0..PAGE`.
    first: Page<T>,
    /// Pages 1 and up, allocated when page 0 is first full.
    more: Option<Box<MorePages<T>>>,
    len: usize,
}

struct MorePages<T> {
    /// `pages[i]` is page `i + 1`.
    pages: Vec<Page<T>>,
    /// Indices into `pages` of the pages that are not full, plus stale ones (see the invariants).
    open: Vec<u32>,
    /// While the slab is drained: `pages`, taken out and passed by value.
    draining: IntoValues<T>,
}

struct Page<T> {
    /// Every slot is initialised: vacant slots are linked from `free`.
    slots: Box<[Entry<T>]>,
    /// The first vacant slot, or `NO_SLOT`.
    free: u16,
    len: u16,
}

enum Entry<T> {
    Occupied(T),
    /// The next vacant slot of the same page, or `NO_SLOT`.
    Vacant(u16),
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { first: Page::default(), more: None, len: 0 }
    }
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page { slots: Box::new([]), free: NO_SLOT, len: 0 }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its key. Keeps every invariant: page 0 first, then the open
    /// page on top of the stack, else a new page.
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if self.first.has_room() {
            self.first.insert(value)
        } else {
            self.more.get_or_insert_with(Box::default).insert(value)
        }
    }

    /// Removes and returns the entry named by `key`; `None` if there is none. Frees the page's
    /// buffer if it was its last entry, drops trailing empty pages but the spare, and frees the
    /// pages once the slab is empty.
    #[inline]
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let value = if key < PAGE {
            self.first.remove(key)?
        } else {
            self.more.as_mut()?.remove((key >> PAGE_BITS) - 1, key & (PAGE - 1))?
        };
        self.len -= 1;
        if self.len == 0 && self.more.is_some() {
            self.free_pages();
        }
        Some(value)
    }

    /// Refilling page 0 takes `PAGE` inserts before the pages are needed again.
    #[cold]
    fn free_pages(&mut self) {
        self.more = None;
    }

    /// The entry named by `key`, if there is one. Changes no page.
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        let (page, offset) = (key >> PAGE_BITS, key & (PAGE - 1));
        let page = match page {
            0 => &mut self.first,
            _ => self.more.as_mut()?.pages.get_mut(page - 1)?,
        };
        match page.slots.get_mut(offset)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    /// How many entries there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes every entry out, leaving the slab empty. Page 0's buffer stays allocated, its slots
    /// vacant and linked in order; pages 1 and up are freed when the drain ends. Dropping the
    /// iterator early drops the entries it did not yield, so the slab is empty either way.
    pub(crate) fn drain(&mut self) -> Drain<'_, T> {
        self.len = 0;
        self.first.len = 0;
        self.first.free = if self.first.slots.is_empty() { NO_SLOT } else { 0 };
        Drain { slab: self, page: 0, offset: 0 }
    }

    /// Takes the entry of a slab that holds at most one, leaving the slab empty: removed by key
    /// if it is in page 0 (found by a scan of page 0, which a drain would make too), else
    /// drained. `None` if the slab was empty.
    #[inline]
    pub(crate) fn take_single(&mut self) -> Option<T> {
        debug_assert!(self.len <= 1, "take_single on a slab of {} entries", self.len);
        match self.first.slots.iter().position(|slot| matches!(slot, Entry::Occupied(_))) {
            Some(offset) => {
                let value = self.first.remove(offset);
                self.len = 0;
                if self.more.is_some() {
                    self.free_pages();
                }
                value
            }
            None => self.drain().next(),
        }
    }

    /// Every entry by value, consuming the slab and its buffers: for a drained list too large
    /// to keep, which [`drain`](Slab::drain) would write back slot by slot.
    pub(crate) fn into_values(mut self) -> IntoValues<T> {
        let slots = mem::take(&mut self.first.slots).into_vec().into_iter();
        let pages = self.more.take().map(|more| more.pages).unwrap_or_default().into_iter();
        IntoValues { slots, pages }
    }

    /// Whether the storage is page 0 alone, of at most `slots` slots (O(1)).
    pub(crate) fn fits_in(&self, slots: usize) -> bool {
        self.more.is_none() && self.first.slots.len() <= slots
    }

    /// How many entries the storage holds without growing.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        let more =
            self.more.as_ref().map_or(0, |more| more.pages.iter().map(|p| p.slots.len()).sum());
        self.first.slots.len() + more
    }

    /// Bytes of heap this slab holds, for the tests that pin how much it gives back.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let slots = |page: &Page<T>| page.slots.len() * size_of::<Entry<T>>();
        let more = self.more.as_ref().map_or(0, |more| {
            size_of::<MorePages<T>>()
                + more.pages.capacity() * size_of::<Page<T>>()
                + more.open.capacity() * size_of::<u32>()
                + more.pages.iter().map(slots).sum::<usize>()
        });
        slots(&self.first) + more
    }
}

/// The entries of a drained slab: page 0 in place, then pages 1 and up, taken. A hand-written
/// loop: a cancel drains every node it reaches, and a `flat_map` over the pages cost a 1000-deep
/// chain 637 instructions per level against this loop's 500 (callgrind, before the drops below
/// were written out).
pub(crate) struct Drain<'a, T> {
    /// Borrowed, not taken apart: the drain owns nothing that needs dropping, so that a drain
    /// that ran to its end (a cancel's) ends with one inline test.
    slab: &'a mut Slab<T>,
    /// 0 while page 0 is passed, then 1 (the pages after it, see `MorePages::drain_next`).
    page: usize,
    /// The next slot of page 0 to look at.
    offset: usize,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.page == 0 {
            let slots = &mut self.slab.first.slots;
            let end = slots.len();
            while let Some(slot) = slots.get_mut(self.offset) {
                // Page 0 stays: each slot left vacant and linked to the next, in order.
                self.offset += 1;
                let next = if self.offset == end { NO_SLOT } else { self.offset as u16 };
                if let Entry::Occupied(value) = mem::replace(slot, Entry::Vacant(next)) {
                    return Some(value);
                }
            }
            self.page = 1;
        }
        self.slab.more.as_mut()?.drain_next()
    }
}

/// The entries of a slab taken by value ([`Slab::into_values`]): each page's buffer is passed
/// by moving out of it, and freed once passed.
pub(crate) struct IntoValues<T> {
    /// The page being passed.
    slots: std::vec::IntoIter<Entry<T>>,
    /// The pages after it.
    pages: std::vec::IntoIter<Page<T>>,
}

impl<T> IntoValues<T> {
    /// The entries of `pages`.
    fn of_pages(pages: Vec<Page<T>>) -> IntoValues<T> {
        IntoValues { slots: Vec::new().into_iter(), pages: pages.into_iter() }
    }
}

impl<T> Iterator for IntoValues<T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        loop {
            for entry in self.slots.by_ref() {
                if let Entry::Occupied(value) = entry {
                    return Some(value);
                }
            }
            let mut page = self.pages.next()?;
            self.slots = mem::take(&mut page.slots).into_vec().into_iter();
        }
    }
}

/// Drops what was not yielded and frees pages 1 and up, so that the slab is empty however the
/// drain ends.
impl<T> Drop for Drain<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.page == 0 || self.slab.more.is_some() {
            self.finish();
        }
    }
}

impl<T> Drain<'_, T> {
    #[cold]
    fn finish(&mut self) {
        self.for_each(drop);
        self.slab.more = None;
    }
}

/// Drops are written out so that dropping an empty slab, which a cancel does for every leaf it
/// finishes, is a few inline tests instead of two calls into drop glue (18 instructions per
/// child of a wide cancel, 173 to 155, by callgrind).
impl<T> Drop for Slab<T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(more) = self.more.take() {
            drop_more(more);
        }
    }
}

#[inline(never)]
fn drop_more<T>(more: Box<MorePages<T>>) {
    drop(more);
}

impl<T> Drop for Page<T> {
    #[inline]
    fn drop(&mut self) {
        if !self.slots.is_empty() {
            drop_slots(mem::take(&mut self.slots));
        }
    }
}

#[inline(never)]
fn drop_slots<T>(slots: Box<[Entry<T>]>) {
    drop(slots);
}

impl<T> Default for MorePages<T> {
    fn default() -> Self {
        MorePages {
            pages: Vec::new(),
            open: Vec::new(),
            draining: IntoValues::of_pages(Vec::new()),
        }
    }
}

impl<T> MorePages<T> {
    /// Inserts into the open page on top of the stack and pops it if that filled it: keeps the
    /// open-stack invariant.
    #[inline]
    fn insert(&mut self, value: T) -> usize {
        let index = match self.open.last() {
            Some(&index) if (index as usize) < self.pages.len() => index as usize,
            _ => self.open_page(),
        };
        let page = &mut self.pages[index];
        let offset = page.insert(value);
        if page.is_full() {
            self.open.pop();
        }
        ((index + 1) << PAGE_BITS) | offset
    }

    /// Pops stale entries off the open stack until an open page is on top, adding a page if
    /// there is none (then the stack is empty: the open-stack invariant holds). Returns its index.
    #[cold]
    fn open_page(&mut self) -> usize {
        while let Some(&index) = self.open.last() {
            if (index as usize) < self.pages.len() {
                return index as usize;
            }
            self.open.pop();
        }
        // Every page is full: the new one gets its whole buffer at once.
        let mut page = Page::default();
        page.grow_to(PAGE);
        self.open.push(to_index(self.pages.len()));
        self.pages.push(page);
        self.pages.len() - 1
    }

    /// Removes an entry of `pages[index]`; lists the page if it was full (open-stack invariant),
    /// and drops trailing empty pages but the spare if that emptied it (spare invariant).
    #[inline]
    fn remove(&mut self, index: usize, offset: usize) -> Option<T> {
        let page = self.pages.get_mut(index)?;
        let was_full = page.is_full();
        let value = page.remove(offset)?;
        let emptied = page.len == 0;
        if was_full {
            self.open.push(to_index(index));
        }
        if emptied {
            self.drop_trailing_empty_pages();
        }
        Some(value)
    }

    /// The next entry of a drain past page 0: the pages are taken out and passed by value
    /// (nothing written back); the drain frees what is left when it ends.
    fn drain_next(&mut self) -> Option<T> {
        if !self.pages.is_empty() {
            self.draining = IntoValues::of_pages(mem::take(&mut self.pages));
        }
        self.draining.next()
    }

    /// Drops trailing empty pages but one, the spare, so that a parent whose count of
    /// dependents goes back and forth across a page boundary does not add and drop a page each
    /// time. Keeps the spare invariant; the stale stack entries left behind are popped as met.
    #[cold]
    fn drop_trailing_empty_pages(&mut self) {
        let len = self.pages.len();
        let empty_run = self.pages.iter().rev().take_while(|page| page.len == 0).count();
        if empty_run < 2 {
            return;
        }
        self.pages.truncate(len - empty_run + 1);
        while self.open.last().is_some_and(|&index| index as usize >= self.pages.len()) {
            self.open.pop();
        }
        if self.pages.len() < self.pages.capacity() / 4 {
            self.pages.shrink_to(self.pages.len() * 2);
        }
        if self.open.len() < self.open.capacity() / 4 {
            self.open.shrink_to(self.open.len() * 2);
        }
    }
}

/// A page index on the open stack: pages are `usize` keys shifted by `PAGE_BITS`, so one fits in
/// 32 bits whenever the key fits in a `u32`, as `tree.rs` requires.
fn to_index(index: usize) -> u32 {
    u32::try_from(index).expect("a page index fits in 32 bits")
}

impl<T> Page<T> {
    fn is_full(&self) -> bool {
        !self.has_room()
    }

    /// A page with fewer than `PAGE` entries has a vacant slot or a buffer that can grow.
    #[inline]
    fn has_room(&self) -> bool {
        usize::from(self.len) < PAGE
    }

    /// Stores `value` in a vacant slot (growing the buffer if none is left) and returns its
    /// offset. Called only if the page has room.
    #[inline]
    fn insert(&mut self, value: T) -> usize {
        if self.free == NO_SLOT {
            self.grow();
        }
        let offset = usize::from(self.free);
        match mem::replace(&mut self.slots[offset], Entry::Occupied(value)) {
            Entry::Vacant(next) => self.free = next,
            Entry::Occupied(_) => unreachable!("the free list only holds vacant slots"),
        }
        self.len += 1;
        offset
    }

    /// Doubles the buffer (at least 1 slot, at most `PAGE`). Called only when no slot is
    /// vacant and the page has room.
    #[cold]
    fn grow(&mut self) {
        self.grow_to((self.slots.len() * 2).clamp(1, PAGE));
    }

    /// Grows the buffer to `new` slots and links the new ones as the free list. Called only when
    /// no slot is vacant.
    fn grow_to(&mut self, new: usize) {
        let old = self.slots.len();
        let mut slots = mem::take(&mut self.slots).into_vec();
        slots.reserve_exact(new - old);
        slots.extend((old + 1..new).map(|next| Entry::Vacant(next as u16)));
        slots.push(Entry::Vacant(NO_SLOT));
        self.slots = slots.into_boxed_slice();
        self.free = old as u16;
    }

    #[inline]
    fn remove(&mut self, offset: usize) -> Option<T> {
        let slot = self.slots.get_mut(offset)?;
        if matches!(slot, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(value) = mem::replace(slot, Entry::Vacant(self.free)) else {
            unreachable!("checked above");
        };
        self.free = offset as u16;
        self.len -= 1;
        if self.len == 0 && self.slots.len() > KEEP_CAPACITY {
            self.free_buffer();
        }
        Some(value)
    }

    /// Gives an emptied page's large buffer back (see "Why O(1) amortised").
    #[cold]
    fn free_buffer(&mut self) {
        *self = Page::default();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::{PAGE, Slab};

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
        assert_eq!(slab.remove(5 * PAGE), None, "a key of a page that does not exist");
        assert_eq!(slab.get_mut(5 * PAGE), None);
    }

    #[test]
    fn emptied_slab_gives_memory_back() {
        let mut slab = Slab::default();
        let keys: Vec<_> = (0..3 * PAGE).map(|i| slab.insert(i)).collect();
        assert!(keys.iter().any(|&key| key >= 2 * PAGE), "three pages were used");
        for key in keys {
            slab.remove(key);
        }
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.heap_bytes(), 0);
    }

    #[test]
    fn a_small_buffer_is_kept_for_a_parent_with_one_child_at_a_time() {
        let mut slab = Slab::default();
        let key = slab.insert(1);
        let held = slab.heap_bytes();
        assert!(held > 0);
        slab.remove(key);
        assert_eq!(slab.heap_bytes(), held, "no free and allocate again on the next child");
        assert_eq!(slab.insert(2), key);
    }

    /// A count going back and forth across a page boundary reuses the spare page: same key,
    /// same memory, every time.
    #[test]
    fn a_count_crossing_a_page_boundary_reuses_the_spare_page() {
        for full in [PAGE, 2 * PAGE] {
            let mut slab = Slab::default();
            let keys: Vec<_> = (0..full).map(|i| slab.insert(i)).collect();
            // The new page's full buffer goes when it empties; then it regrows small, and stays.
            let key = slab.insert(full);
            slab.remove(key);
            assert_eq!(slab.insert(full), key);
            slab.remove(key);
            let held = slab.heap_bytes();
            for round in 0..100 {
                assert_eq!(slab.insert(round), key);
                assert_eq!(slab.remove(key), Some(round));
                assert_eq!(slab.heap_bytes(), held);
            }
            assert_eq!(keys.len(), slab.len());
        }
    }

    /// One survivor of a million-entry burst, at the first, a middle and the last key: the slab
    /// holds at most 64 KiB (the page that holds it, and the headers up to it).
    #[test]
    fn one_survivor_of_a_burst_holds_at_most_64_kib() {
        const MILLION: usize = 1_000_000;
        for survivor in [0, MILLION / 2, MILLION - 1] {
            let mut slab = Slab::default();
            let keys: Vec<_> = (0..MILLION).map(|i| slab.insert(i as u64)).collect();
            let peak = slab.heap_bytes();
            for (i, &key) in keys.iter().enumerate() {
                if i != survivor {
                    assert_eq!(slab.remove(key), Some(i as u64));
                }
            }
            let held = slab.heap_bytes();
            assert!(held <= 64 * 1024, "survivor {survivor}: {held} bytes held (peak {peak})");
            assert_eq!(slab.len(), 1);
            assert_eq!(slab.get_mut(keys[survivor]), Some(&mut (survivor as u64)));
            let again: Vec<_> = (0..MILLION).map(|i| slab.insert(i as u64)).collect();
            assert!(slab.heap_bytes() <= peak + 64 * 1024, "a second burst reuses the space");
            for key in again {
                slab.remove(key);
            }
            assert!(slab.heap_bytes() <= 64 * 1024);
        }
    }

    #[test]
    fn drain_takes_only_occupied() {
        let mut slab = Slab::default();
        let keys: Vec<_> = (0..2 * PAGE + 3).map(|i| slab.insert(i)).collect();
        for &key in keys.iter().step_by(2) {
            slab.remove(key);
        }
        let mut all: Vec<_> = slab.drain().collect();
        all.sort();
        assert_eq!(all, (1..2 * PAGE + 3).step_by(2).collect::<Vec<_>>());
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.capacity(), PAGE, "page 0 is kept, the pages after it are freed");
        // The kept page is whole again: its slots come back in order.
        assert_eq!((0..3).map(|i| slab.insert(i)).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    /// What a cancel does with a node's only dependent: taken out wherever it is, the slab left
    /// empty and usable, page 0's buffer kept.
    #[test]
    fn take_single_takes_the_only_entry_from_any_page() {
        let mut slab = Slab::default();
        assert_eq!(slab.take_single(), None::<usize>);
        let keys: Vec<_> = (0..2 * PAGE + 1).map(|i| slab.insert(i)).collect();
        for &key in &keys[..2 * PAGE] {
            slab.remove(key);
        }
        assert_eq!(slab.take_single(), Some(2 * PAGE), "an entry of page 2");
        assert_eq!((slab.len(), slab.heap_bytes()), (0, 0));
        let first = slab.insert(7);
        let _second = slab.insert(8);
        slab.remove(first);
        let held = slab.heap_bytes();
        assert_eq!(slab.take_single(), Some(8), "an entry of page 0, not in its first slot");
        assert_eq!((slab.len(), slab.heap_bytes()), (0, held));
        assert_eq!(slab.get_mut(1), None);
        let again: Vec<_> = (0..3).map(|i| slab.insert(i)).collect();
        assert_eq!(again.len(), 3);
        assert_eq!(slab.len(), 3);
    }

    /// A large drained list is passed by value: every entry once, the ones not yielded dropped.
    #[test]
    fn into_values_yields_every_entry_of_every_page_once() {
        let mut slab = Slab::default();
        let keys: Vec<_> = (0..3 * PAGE).map(|i| slab.insert(std::rc::Rc::new(i))).collect();
        for &key in keys.iter().skip(1).step_by(3) {
            slab.remove(key);
        }
        let expected: Vec<_> = (0..3 * PAGE).filter(|i| i % 3 != 1).collect();
        let all: Vec<_> = slab.into_values().map(|rc| *rc).collect();
        assert_eq!(all, expected, "in key order");
        let values: Vec<_> = (0..PAGE + 5).map(std::rc::Rc::new).collect();
        let mut slab = Slab::default();
        for value in &values {
            slab.insert(value.clone());
        }
        let mut iter = slab.into_values();
        assert!(iter.next().is_some());
        drop(iter);
        assert!(values.iter().all(|value| std::rc::Rc::strong_count(value) == 1));
    }

    /// A drain dropped early still empties the slab (and drops what it did not yield).
    #[test]
    fn a_drain_dropped_early_empties_the_slab() {
        let mut slab = Slab::default();
        let values: Vec<_> = (0..PAGE + 10).map(std::rc::Rc::new).collect();
        for value in &values {
            slab.insert(value.clone());
        }
        assert!(slab.drain().next().is_some());
        assert_eq!(slab.len(), 0);
        assert!(values.iter().all(|value| std::rc::Rc::strong_count(value) == 1));
        let keys: Vec<_> = (0..PAGE + 1).map(|i| slab.insert(std::rc::Rc::new(i))).collect();
        assert_eq!(keys.last(), Some(&PAGE), "page 0 filled again in order, then page 1");
    }

    /// What a cancel relies on to hand a small drained slab on: it keeps its few slots.
    #[test]
    fn a_drained_small_slab_keeps_its_storage() {
        let mut slab = Slab::default();
        for i in 0..3 {
            slab.insert(i);
        }
        assert_eq!(slab.drain().count(), 3);
        assert_eq!(slab.capacity(), 4);
        assert!(slab.fits_in(4) && !slab.fits_in(3));
        assert_eq!(Slab::<u8>::default().capacity(), 0);
        let mut large = Slab::default();
        let keys: Vec<_> = (0..super::PAGE + 1).map(|i| large.insert(i)).collect();
        assert!(!large.fits_in(usize::MAX), "pages past page 0");
        for key in keys {
            large.remove(key);
        }
        assert!(large.fits_in(super::KEEP_CAPACITY), "emptied, back to a small page 0");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert,
        /// Removes the live entry at this position (modulo the number of live entries).
        Remove(usize),
        /// Removes a key that may name nothing.
        RemoveKey(usize),
        /// Inserts this many entries, then removes all but the first of them.
        Burst(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Insert),
            4 => any::<usize>().prop_map(Op::Remove),
            1 => (0..4 * PAGE).prop_map(Op::RemoveKey),
            1 => (0..3 * PAGE).prop_map(Op::Burst),
        ]
    }

    proptest! {
        /// The slab behaves as a map from keys to values whose keys are never reused while
        /// live, and it never holds more than its entries need plus a page per used page.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 1..200)) {
            let mut slab = Slab::default();
            let mut model: HashMap<usize, u32> = HashMap::new();
            let mut next = 0u32;
            let mut insert = |slab: &mut Slab<u32>, model: &mut HashMap<usize, u32>| {
                next += 1;
                let key = slab.insert(next);
                prop_assert!(model.insert(key, next).is_none(), "key {} handed out twice", key);
                Ok(key)
            };
            for op in ops {
                match op {
                    Op::Insert => {
                        insert(&mut slab, &mut model)?;
                    }
                    Op::Remove(i) if !model.is_empty() => {
                        let mut keys: Vec<_> = model.keys().copied().collect();
                        keys.sort();
                        let key = keys[i % keys.len()];
                        prop_assert_eq!(slab.remove(key), model.remove(&key));
                    }
                    Op::Remove(_) => {}
                    Op::RemoveKey(key) => prop_assert_eq!(slab.remove(key), model.remove(&key)),
                    Op::Burst(n) => {
                        let keys = (0..n)
                            .map(|_| insert(&mut slab, &mut model))
                            .collect::<Result<Vec<_>, _>>()?;
                        for key in keys.into_iter().skip(1) {
                            prop_assert_eq!(slab.remove(key), model.remove(&key));
                        }
                    }
                }
                prop_assert_eq!(slab.len(), model.len());
                // A full buffer per page with an entry (slots of at most 16 bytes), plus headers.
                let pages: HashSet<_> = model.keys().map(|key| key / PAGE).collect();
                let (held, bound) = (slab.heap_bytes(), pages.len() * PAGE * 16 + 64 * 1024);
                prop_assert!(held <= bound, "{} bytes for {} entries", held, model.len());
            }
            for (key, value) in &model {
                prop_assert_eq!(slab.get_mut(*key), Some(&mut value.clone()));
            }
            // Both ways a cancel takes a list out.
            let mut drained: Vec<_> = if next % 2 == 0 {
                slab.drain().collect()
            } else {
                slab.into_values().collect()
            };
            drained.sort();
            let mut expected: Vec<_> = model.into_values().collect();
            expected.sort();
            prop_assert_eq!(drained, expected);
        }
    }
}
