//! Where an object lives, computed the same way by every client and worker, with no
//! master: rendezvous (highest-random-weight) hashing of (bucket, key) over the members.
//!
//! Every member gets a score `xxh3(member name ‖ bucket ‖ key)`; the members sorted by
//! score, highest first, are the object's *preference list*. Its first R members are the
//! replica set, the first live one is the primary, and the rest of the list is where
//! hand-off goes when a replica is down. Adding or removing a member moves only the keys
//! whose top R changes (about R/N of them), which is what makes scale-out cheap.

use std::net::SocketAddr;

use xxhash_rust::xxh3::xxh3_64;

use crate::{BucketName, ObjectKey};

/// A worker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Stable id, used in responses and status.
    pub id: u16,
    /// Name: its certificate's subject, and part of every placement score, so renaming
    /// a member moves its keys.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The members of a cluster, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    members: Vec<Member>,
}

impl Placement {
    /// A placement over `members`.
    pub fn new(members: Vec<Member>) -> Self {
        Self { members }
    }

    /// All members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with `id`.
    pub fn member(&self, id: u16) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Every member, best first, for this object.
    pub fn preference_list(&self, bucket: &BucketName, key: &ObjectKey) -> Vec<&Member> {
        let mut scored: Vec<(u64, &Member)> = self
            .members
            .iter()
            .map(|m| (score(m, bucket, key), m))
            .collect();
        // Ties (vanishingly rare) are broken by id so every node agrees.
        scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        scored.into_iter().map(|(_, m)| m).collect()
    }
}

fn score(member: &Member, bucket: &BucketName, key: &ObjectKey) -> u64 {
    let mut input =
        Vec::with_capacity(member.name.len() + bucket.as_str().len() + key.as_str().len() + 2);
    input.extend_from_slice(member.name.as_bytes());
    input.push(0);
    input.extend_from_slice(bucket.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(key.as_str().as_bytes());
    xxh3_64(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u16) -> Vec<Member> {
        (0..n)
            .map(|id| Member {
                id,
                name: format!("node-{id}"),
                addr: SocketAddr::from(([127, 0, 0, 1], 7400 + id)),
            })
            .collect()
    }

    fn top(p: &Placement, key: &str, r: usize) -> Vec<u16> {
        let bucket = BucketName::new("bucket").unwrap();
        p.preference_list(&bucket, &ObjectKey::new(key).unwrap())
            .iter()
            .take(r)
            .map(|m| m.id)
            .collect()
    }

    const PINNED_K0: [u16; 5] = [1, 4, 3, 0, 2];

    #[test]
    fn placement_is_deterministic_and_independent_of_member_order() {
        let a = Placement::new(members(5));
        let mut reversed = members(5);
        reversed.reverse();
        let b = Placement::new(reversed);
        for i in 0..200 {
            let key = format!("k{i}");
            assert_eq!(top(&a, &key, 5), top(&b, &key, 5));
        }
        // Pinned values: a change of hash or input layout would move every object of a
        // running cluster, so it must be deliberate.
        assert_eq!(top(&a, "k0", 5), PINNED_K0, "{:?}", top(&a, "k0", 5));
    }

    #[test]
    fn keys_spread_evenly() {
        let p = Placement::new(members(3));
        let mut primaries = [0u32; 3];
        for i in 0..30_000 {
            primaries[top(&p, &format!("part-{i}.parquet"), 1)[0] as usize] += 1;
        }
        for count in primaries {
            assert!((9_000..11_000).contains(&count), "uneven: {primaries:?}");
        }
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let before = Placement::new(members(5));
        let after = Placement::new(members(5).into_iter().filter(|m| m.id != 2).collect());
        for i in 0..2_000 {
            let key = format!("k{i}");
            let old = top(&before, &key, 2);
            let new = top(&after, &key, 2);
            if !old.contains(&2) {
                assert_eq!(old, new, "{key} moved although its replicas stayed");
            } else {
                // The survivor keeps its place; the next member takes over.
                let survivor = old.iter().find(|&&m| m != 2).unwrap();
                assert!(new.contains(survivor));
            }
        }
    }
}
