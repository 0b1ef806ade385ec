//! Completing a multipart upload, in one run on one machine: a 64 MiB object from eight
//! 8 MiB parts held by a three-worker cluster (R=2, W=2), three ways.
//!
//! 1. **Composed in place**: one `Compose` request; each replica concatenates its own
//!    copies of the parts (what the gateway does).
//! 2. **Copied through a client**: every part read from the cluster and the object
//!    written back (what the gateway did before, and still does when a replica lacks a
//!    part): each byte crosses QUIC three more times.
//! 3. **memcpy** of the same 64 MiB: the floor of one copy in memory.
//!
//! Rounds alternate, so the machine's noise falls on all three alike. Run with
//! `cargo bench -p fdw-benches --bench compose`.

use std::time::Duration;

use bytes::Bytes;
use fdw_client::{Client, Replication, WriteType};
use fdw_engine::LocalCluster;
use fdw_net::placement::staged_name;
use fdw_net::wire::NumberedParts;
use fdw_net::{BucketName, ObjectKey};

const PARTS: u16 = 8;
const PART: usize = 8 << 20;
const ROUNDS: usize = 7;

fn now() -> std::time::Instant {
    #[allow(clippy::disallowed_methods)] // benchmark wall time is the measurement
    std::time::Instant::now()
}

fn replication(write_type: WriteType) -> Replication {
    Replication::new(write_type, 2, 2).expect("R=2 W=2")
}

/// Stages the parts for `key`, and returns their prefix and description.
async fn stage(client: &Client, key: &str) -> (String, Vec<(u16, u64, u32)>) {
    let bucket = BucketName::new("bench").expect("bucket");
    let target = ObjectKey::new(key).expect("key");
    let prefix = format!("{}/", staged_name(0, &bucket, &target));
    let mut described = Vec::new();
    for number in 1..=PARTS {
        let data = fdw_tools::bench::object(2, u64::from(number), PART as u64);
        let key = NumberedParts::key(&prefix, number);
        let receipt = client
            .put_bytes("bench", &key, data, replication(WriteType::MustCache))
            .await
            .expect("part");
        described.push((number, PART as u64, receipt.crc));
    }
    (prefix, described)
}

async fn composed(client: &Client, prefix: &str, parts: &[(u16, u64, u32)]) -> Duration {
    let started = now();
    client
        .compose(
            "bench",
            "target",
            prefix,
            parts,
            replication(WriteType::MustCache),
        )
        .await
        .expect("compose");
    started.elapsed()
}

async fn copied(client: &Client, prefix: &str) -> Duration {
    let started = now();
    let mut whole = Vec::with_capacity(PARTS as usize * PART);
    for number in 1..=PARTS {
        let part = client
            .get("bench", &NumberedParts::key(prefix, number))
            .await
            .expect("part");
        whole.extend_from_slice(&part);
    }
    client
        .put_bytes(
            "bench",
            "target",
            Bytes::from(whole),
            replication(WriteType::MustCache),
        )
        .await
        .expect("put");
    started.elapsed()
}

fn memcpy(source: &[u8], into: &mut [u8]) -> Duration {
    let started = now();
    into.copy_from_slice(source);
    std::hint::black_box(&into);
    started.elapsed()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    fdw_benches::runtime().block_on(async {
        let cluster = LocalCluster::start(3, fdw_benches::pool(512 << 20), |_| {})
            .await
            .expect("cluster");
        let client = cluster.client("bench").await.expect("client");
        let (prefix, parts) = stage(&client, "target").await;
        let source = vec![7u8; PARTS as usize * PART];
        let mut into = vec![0u8; source.len()];
        println!(
            "completing a {} MiB object from {PARTS} parts of {} MiB, 3 workers, R=2 W=2",
            source.len() >> 20,
            PART >> 20
        );
        let (mut compose, mut copy, mut local) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            compose.push(composed(&client, &prefix, &parts).await);
            copy.push(copied(&client, &prefix).await);
            local.push(memcpy(&source, &mut into));
            println!(
                "  round {round}: composed {:?}, copied {:?}, memcpy {:?}",
                compose[round], copy[round], local[round]
            );
        }
        let (compose, copy, local) = (median(&mut compose), median(&mut copy), median(&mut local));
        println!(
            "  median: composed in place {compose:.1?}, copied through a client {copy:.1?} \
             ({:.1}x the compose), memcpy {local:.1?} ({:.1}x faster than the compose)",
            copy.as_secs_f64() / compose.as_secs_f64(),
            compose.as_secs_f64() / local.as_secs_f64(),
        );
        cluster.shutdown().await;
    });
}
