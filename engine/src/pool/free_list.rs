//! A lock-free stack of free chunk indices (a Treiber stack over an index array).
//!
//! The head packs a chunk index with a tag that every successful update bumps, so a pop
//! that read a stale `next` cannot succeed after the head went A → B → A (the ABA
//! problem): its compare-exchange sees a different tag. The tag wraps after 2^32 updates,
//! which would have to happen between one pop's load and its compare-exchange.
//!
//! `taken` pairs every pop with the push that must follow it: popping an index that is
//! already out, or pushing one that is not, is a bug and panics at once.

use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Marks the end of the stack. Chunk counts stay below it.
const NIL: u32 = u32::MAX;
/// The most chunks one list can hold.
pub(crate) const MAX_CHUNKS: u32 = NIL - 1;

fn pack(index: u32, tag: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

fn unpack(head: u64) -> (u32, u32) {
    (head as u32, (head >> 32) as u32)
}

pub(crate) struct FreeList {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
    taken: Box<[AtomicBool]>,
    free: AtomicUsize,
}

impl FreeList {
    /// A list holding every index in `0..len`, lowest first.
    pub(crate) fn new(len: u32) -> Self {
        assert!(len <= MAX_CHUNKS, "{len} chunks is over MAX_CHUNKS");
        let next = (0..len)
            .map(|i| AtomicU32::new(if i + 1 < len { i + 1 } else { NIL }))
            .collect();
        let taken = (0..len).map(|_| AtomicBool::new(false)).collect();
        Self {
            head: AtomicU64::new(pack(if len == 0 { NIL } else { 0 }, 0)),
            next,
            taken,
            free: AtomicUsize::new(len as usize),
        }
    }

    /// Takes a free index, or `None` when every index is out. Never blocks.
    pub(crate) fn pop(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (index, tag) = unpack(head);
            if index == NIL {
                return None;
            }
            // May be stale if another thread popped `index` meanwhile; the tag makes the
            // compare-exchange below fail in that case.
            let next = self.next[index as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(next, tag.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let was_taken = self.taken[index as usize].swap(true, Ordering::Relaxed);
                    assert!(!was_taken, "chunk {index} handed out twice");
                    self.free.fetch_sub(1, Ordering::Relaxed);
                    return Some(index);
                }
                Err(current) => head = current,
            }
        }
    }

    /// Returns `index`, which the caller took with [`pop`](Self::pop) and no longer uses.
    pub(crate) fn push(&self, index: u32) {
        let was_taken = self.taken[index as usize].swap(false, Ordering::Relaxed);
        assert!(was_taken, "chunk {index} released but it was not taken");
        self.free.fetch_add(1, Ordering::Relaxed);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (top, tag) = unpack(head);
            self.next[index as usize].store(top, Ordering::Relaxed);
            // Release: a pop that acquires this head also sees the `next` stored above.
            match self.head.compare_exchange_weak(
                head,
                pack(index, tag.wrapping_add(1)),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    /// How many indices are free right now (a snapshot under concurrency).
    pub(crate) fn free(&self) -> usize {
        self.free.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(fdw_loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn hands_out_each_index_once_then_reports_empty() {
        let list = FreeList::new(5);
        let taken: HashSet<u32> = (0..5).map(|_| list.pop().unwrap()).collect();
        assert_eq!(taken, (0..5).collect::<HashSet<u32>>());
        assert_eq!(list.pop(), None);
        assert_eq!(list.free(), 0);
        list.push(3);
        assert_eq!(list.pop(), Some(3));
    }

    #[test]
    fn empty_list_is_empty() {
        assert_eq!(FreeList::new(0).pop(), None);
    }

    #[test]
    #[should_panic(expected = "released but it was not taken")]
    fn releasing_a_free_index_panics() {
        FreeList::new(2).push(1);
    }

    #[test]
    fn threads_never_share_an_index() {
        let list = FreeList::new(64);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let mut held = Vec::new();
                        while held.len() < 8 {
                            if let Some(i) = list.pop() {
                                held.push(i);
                            }
                        }
                        for i in held {
                            list.push(i);
                        }
                    }
                });
            }
        });
        assert_eq!(list.free(), 64);
    }
}

#[cfg(all(test, fdw_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two threads pop concurrently: they never get the same index, and what they return
    /// is free again.
    #[test]
    fn concurrent_pops_are_distinct() {
        loom::model(|| {
            let list = Arc::new(FreeList::new(2));
            let other = {
                let list = list.clone();
                thread::spawn(move || list.pop())
            };
            let mine = list.pop();
            let theirs = other.join().unwrap();
            assert!(mine.is_some() && theirs.is_some());
            assert_ne!(mine, theirs);
            assert_eq!(list.pop(), None);
            list.push(mine.unwrap());
            list.push(theirs.unwrap());
            assert_eq!(list.free(), 2);
        });
    }

    /// The ABA schedule: while one thread is mid-pop (it read head = A, next = B),
    /// another pops A and B and pushes A back. Without the tag the first thread's
    /// compare-exchange would succeed and install B, which is taken. No index is ever
    /// handed out twice (the `taken` assertion would fire) and nothing is lost.
    #[test]
    fn pop_push_churn_loses_nothing() {
        loom::model(|| {
            let list = Arc::new(FreeList::new(2));
            let churn = {
                let list = list.clone();
                thread::spawn(move || {
                    let a = list.pop();
                    let b = list.pop();
                    for i in [a, b].into_iter().flatten() {
                        list.push(i);
                    }
                })
            };
            let held = list.pop();
            churn.join().unwrap();
            if let Some(i) = held {
                list.push(i);
            }
            let mut seen = Vec::new();
            while let Some(i) = list.pop() {
                seen.push(i);
            }
            seen.sort_unstable();
            assert_eq!(seen, vec![0, 1]);
        });
    }

    /// A release racing an allocation: the allocator gets either the released index or
    /// finds the list empty, never garbage.
    #[test]
    fn push_races_pop() {
        loom::model(|| {
            let list = Arc::new(FreeList::new(1));
            let first = list.pop().unwrap();
            let releaser = {
                let list = list.clone();
                thread::spawn(move || list.push(first))
            };
            let got = list.pop();
            releaser.join().unwrap();
            match got {
                Some(i) => {
                    assert_eq!(i, first);
                    assert_eq!(list.pop(), None);
                }
                None => assert_eq!(list.pop(), Some(first)),
            }
        });
    }
}
