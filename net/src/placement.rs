//! Where an object lives, computed the same way by every client and worker, with no
//! master: rendezvous (highest-random-weight) hashing of (bucket, key) over the members.
//!
//! Every object has a *placement hash*, `xxh3(bucket ‖ key)`, and every member a score
//! `xxh3(member name ‖ placement hash)`; the members sorted by score, highest first, are
//! the object's *preference list*. Its first R members are the
//! replica set, the first live one is the primary, and the rest of the list is where
//! hand-off goes when a replica is down. Adding or removing a member moves only the keys
//! whose top R changes (about R/N of them), which is what makes scale-out cheap.
//!
//! **Staged keys** are placed with the key they are staged for: a key
//! `<STAGED_PREFIX><16 hex digits><16 hex digits>…` takes the second group of digits as
//! its placement hash ([`staged_name`] makes one). So the parts of a multipart upload
//! live on the replicas of the object they will become, and each replica can compose
//! that object from its own copies, with no byte crossing the network again.

use std::net::SocketAddr;

use xxhash_rust::xxh3::xxh3_64;

use crate::{BucketName, ObjectKey};

/// Keys under this prefix are staged for another key and placed with it (see the module
/// documentation). Clients of the S3 gateway cannot write them.
pub const STAGED_PREFIX: &str = ".fdw-multipart/";

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
        let hash = placement_hash(bucket, key);
        let mut scored: Vec<(u64, &Member)> =
            self.members.iter().map(|m| (score(m, hash), m)).collect();
        // Ties (vanishingly rare) are broken by id so every node agrees.
        scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        scored.into_iter().map(|(_, m)| m).collect()
    }
}

/// What places an object: the hash of its bucket and key, or, for a staged key, the
/// hash of the key it is staged for.
pub fn placement_hash(bucket: &BucketName, key: &ObjectKey) -> u64 {
    if let Some(hash) = staged_hash(key.as_str()) {
        return hash;
    }
    let mut input = Vec::with_capacity(bucket.as_str().len() + key.as_str().len() + 1);
    input.extend_from_slice(bucket.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(key.as_str().as_bytes());
    xxh3_64(&input)
}

/// The start of a staged key placed with `key`: [`STAGED_PREFIX`], then `tag` (the
/// stager's own, for instance a time, so that its names sort by it), then the placement
/// hash of `key`, each as 16 hex digits. The stager appends what makes it unique.
pub fn staged_name(tag: u64, bucket: &BucketName, key: &ObjectKey) -> String {
    format!(
        "{STAGED_PREFIX}{tag:016x}{:016x}",
        placement_hash(bucket, key)
    )
}

fn staged_hash(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(STAGED_PREFIX)?.get(16..32)?;
    // Only lowercase hex, as `staged_name` writes: one name, one placement.
    if !digits
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn score(member: &Member, hash: u64) -> u64 {
    let mut input = Vec::with_capacity(member.name.len() + 9);
    input.extend_from_slice(member.name.as_bytes());
    input.push(0);
    input.extend_from_slice(&hash.to_le_bytes());
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
        top_in(p, "bucket", key, r)
    }

    fn top_in(p: &Placement, bucket: &str, key: &str, r: usize) -> Vec<u16> {
        let bucket = BucketName::new(bucket).unwrap();
        p.preference_list(&bucket, &ObjectKey::new(key).unwrap())
            .iter()
            .take(r)
            .map(|m| m.id)
            .collect()
    }

    const PINNED_K0: [u16; 5] = [0, 2, 1, 3, 4];

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

    #[test]
    fn staged_keys_are_placed_with_their_target() {
        let p = Placement::new(members(7));
        let mut moved = 0;
        for i in 0..500u64 {
            let (bucket, key) = (format!("bucket-{}", i % 3), format!("out/part-{i}.parquet"));
            let name = staged_name(
                i << 20,
                &BucketName::new(bucket.as_str()).unwrap(),
                &ObjectKey::new(key.as_str()).unwrap(),
            );
            let target = top_in(&p, &bucket, &key, 7);
            for staged in [name.clone(), format!("{name}{i:016x}/{:05}", i % 10_000)] {
                assert_eq!(top_in(&p, &bucket, &staged, 7), target, "{staged}");
            }
            // Without the hash (upper case, or cut short) a name is placed as itself.
            let plain = name
                .to_uppercase()
                .replace(".FDW-MULTIPART/", STAGED_PREFIX);
            moved += usize::from(top_in(&p, &bucket, &plain, 7) != target);
            assert_eq!(staged_hash(&name[..name.len() - 1]), None);
        }
        assert!(
            moved > 400,
            "only {moved} of 500 unstaged names placed elsewhere"
        );
    }
}
