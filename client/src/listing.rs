//! Merging the listing pages of several members into one page that is complete up to
//! where it says it resumes.
//!
//! Each member answers with its own keys in order, as many as fit its page, and where
//! it stopped. A key held only by members that stopped earlier may sort anywhere after
//! their stopping points, so the merged page is complete only up to the smallest key
//! any member stopped at: nothing past it is shown, and the page resumes there. A key's
//! newest version across members wins, and a key whose newest version is a tombstone
//! is left out, so an older copy a member still holds never outlives its delete.

use std::collections::BTreeMap;

use fdw_net::wire::ListEntry;

use crate::ListPage;

/// One member's answer: its entries in key order and where it stopped, if it did.
pub(crate) struct MemberPage {
    pub(crate) entries: Vec<ListEntry>,
    pub(crate) next_start_after: Option<String>,
}

/// Up to `max_keys` live keys of the union of `pages`, complete up to the page's
/// resume point.
pub(crate) fn merge(pages: Vec<MemberPage>, max_keys: usize) -> ListPage {
    let bound = pages
        .iter()
        .filter_map(|page| page.next_start_after.clone())
        .min();
    let mut newest: BTreeMap<String, ListEntry> = BTreeMap::new();
    for entry in pages.into_iter().flat_map(|page| page.entries) {
        let key = entry.key.as_str();
        if bound.as_deref().is_some_and(|bound| key > bound) {
            continue;
        }
        if newest
            .get(key)
            .is_none_or(|have| have.version < entry.version)
        {
            newest.insert(key.to_owned(), entry);
        }
    }
    let mut live = newest.into_values().filter(|entry| !entry.deleted);
    let entries: Vec<ListEntry> = live.by_ref().take(max_keys).collect();
    let next_start_after = if live.next().is_some() {
        // Cut at max_keys: resume after the last key shown.
        entries.last().map(|entry| entry.key.to_string())
    } else {
        // Everything up to the bound is shown: resume past it, if a member stopped.
        bound
    };
    ListPage {
        entries,
        next_start_after,
    }
}

#[cfg(test)]
mod tests {
    use fdw_net::{ObjectKey, Version};

    use super::*;

    fn entry(key: &str, version: u64, deleted: bool) -> ListEntry {
        ListEntry {
            key: ObjectKey::new(key).expect("valid key"),
            version: Version(version),
            len: 1,
            digest: Default::default(),
            deleted,
        }
    }

    fn page(keys: &[(&str, u64, bool)], next: Option<&str>) -> MemberPage {
        MemberPage {
            entries: keys.iter().map(|&(k, v, d)| entry(k, v, d)).collect(),
            next_start_after: next.map(str::to_owned),
        }
    }

    fn keys(page: &ListPage) -> Vec<&str> {
        page.entries.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn a_member_that_stopped_early_bounds_the_page() {
        // Member 1 stopped at "b": "d" of member 2 may have "c" of member 1 before it.
        let merged = merge(
            vec![
                page(&[("a", 1, false), ("b", 1, false)], Some("b")),
                page(&[("a", 1, false), ("d", 1, false)], None),
            ],
            10,
        );
        assert_eq!(keys(&merged), ["a", "b"]);
        assert_eq!(merged.next_start_after.as_deref(), Some("b"));
    }

    #[test]
    fn newest_versions_win_and_tombstones_hide_older_copies() {
        let merged = merge(
            vec![
                page(&[("a", 1, false), ("b", 5, false)], None),
                page(&[("a", 2, true), ("b", 3, false), ("c", 1, false)], None),
            ],
            10,
        );
        assert_eq!(keys(&merged), ["b", "c"]);
        assert_eq!(merged.entries[0].version, Version(5));
        assert_eq!(merged.next_start_after, None);
    }

    #[test]
    fn a_page_cut_at_max_keys_resumes_after_its_last_key() {
        let all = [
            ("a", 1, false),
            ("b", 1, true),
            ("c", 1, false),
            ("d", 1, false),
        ];
        let merged = merge(vec![page(&all, None)], 2);
        assert_eq!(keys(&merged), ["a", "c"]);
        assert_eq!(merged.next_start_after.as_deref(), Some("c"));
        // Exactly max_keys live keys left: the page is the last.
        let merged = merge(vec![page(&all, None)], 3);
        assert_eq!(keys(&merged), ["a", "c", "d"]);
        assert_eq!(merged.next_start_after, None);
    }

    #[test]
    fn a_bound_past_only_tombstones_still_resumes() {
        let merged = merge(vec![page(&[("a", 1, true)], Some("a"))], 10);
        assert!(merged.entries.is_empty());
        assert_eq!(merged.next_start_after.as_deref(), Some("a"));
    }

    proptest::proptest! {
        /// Whatever each member's pages, following resume points yields every live
        /// key of the union exactly once, in order.
        #[test]
        fn paging_members_yields_the_union(
            held in proptest::collection::vec(
                proptest::collection::btree_map("[a-e]{1,3}", (1u64..4, proptest::bool::ANY), 0..20),
                1..4,
            ),
            member_page in 1usize..5,
            max_keys in 1usize..6,
        ) {
            let mut truth: BTreeMap<String, (u64, bool)> = BTreeMap::new();
            for member in &held {
                for (key, &(version, deleted)) in member {
                    if truth.get(key).is_none_or(|&(v, _)| v < version) {
                        truth.insert(key.clone(), (version, deleted));
                    }
                }
            }
            let want: Vec<String> =
                truth.into_iter().filter(|(_, (_, d))| !d).map(|(k, _)| k).collect();
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            for _ in 0..1000 {
                let pages = held.iter().map(|member| {
                    let rest: Vec<_> = member
                        .iter()
                        .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                        .collect();
                    let shown: Vec<ListEntry> = rest
                        .iter()
                        .take(member_page)
                        .map(|&(k, &(v, d))| entry(k, v, d))
                        .collect();
                    let next = (rest.len() > member_page)
                        .then(|| shown.last().map(|e| e.key.to_string()))
                        .flatten();
                    MemberPage { entries: shown, next_start_after: next }
                });
                let merged = merge(pages.collect(), max_keys);
                got.extend(merged.entries.iter().map(|e| e.key.to_string()));
                match merged.next_start_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }
}
