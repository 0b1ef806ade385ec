//! Helpers shared by the cluster tests, in-process and with real processes.
#![allow(dead_code)] // each test binary uses a part

pub mod processes;

use std::time::Duration;

use fdw_client::Client;
use fdw_engine::{HugePagePolicy, PoolConfig};
use fdw_net::placement::Placement;
use fdw_net::{BucketName, ObjectKey};

/// Chunk (and frame) size of the test clusters.
pub const CHUNK: usize = 64 * 1024;

/// A pool of `size_bytes` in plain pages, not populated: cheap to start many times.
pub fn pool(size_bytes: usize) -> PoolConfig {
    PoolConfig {
        size_bytes,
        chunk_size_bytes: CHUNK,
        huge_pages: HugePagePolicy::Off,
        populate: false,
        lock: false,
    }
}

/// Whether node `viewer` sees member `id` alive, by its status; `None` if it cannot say.
pub async fn sees_alive(client: &Client, viewer: u16, id: u16) -> Option<bool> {
    let member = client.members().iter().find(|m| m.id == viewer)?;
    let status = client.status_of(member).await.ok()?;
    status.members.iter().find(|m| m.id == id).map(|m| m.alive)
}

/// Waits (up to 10 s) until every node of `viewers` sees member `id` as `alive` says,
/// and fails the test if they do not.
pub async fn wait_seen(client: &Client, viewers: &[u16], id: u16, alive: bool) {
    for _ in 0..500 {
        let mut all = true;
        for &viewer in viewers {
            all &= sees_alive(client, viewer, id).await == Some(alive);
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for &viewer in viewers {
        assert_eq!(
            sees_alive(client, viewer, id).await,
            Some(alive),
            "node {viewer}'s view of node {id}"
        );
    }
}

/// The first keys of `bucket` (`key-0`, `key-1`, …) whose preference list starts with
/// the members `first`, in that order: `count` of them.
pub fn keys_placed(
    placement: &Placement,
    bucket: &str,
    first: &[u16],
    count: usize,
) -> Vec<String> {
    let bucket = BucketName::new(bucket).unwrap();
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("key-{i}"))
        .filter(|k| {
            let list = placement.preference_list(&bucket, &ObjectKey::new(k.as_str()).unwrap());
            list.iter().zip(first).all(|(m, id)| m.id == *id)
        })
        .take(count)
        .collect();
    assert_eq!(keys.len(), count, "not enough keys placed as {first:?}");
    keys
}

/// Polls `done` every 20 ms for up to 30 s.
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}
