//! The crash test: three real `fdw-engine` processes persisting to an S3 server in this
//! process that behaves like the cloud's (latency, bandwidth per connection), a writer
//! streaming R=2 W=2 puts of 4 KiB to 32 MiB, and a chaos loop that, at seeded random
//! moments, SIGKILLs a random worker and restarts it, or SIGSTOPs it and resumes it.
//!
//! What must hold at the end:
//! - every acknowledged put reads back identical and ends persisted in S3, identical,
//!   with the right CRC32: puts lost must be 0;
//! - a put in flight at a kill either failed with an error or is there whole: never
//!   partial, never different;
//! - no multipart upload is left open.
//!
//! After each fault the loop waits until every worker reports its recovery complete
//! (owners and R live copies restored) and reports how long that took.
//!
//! `FDW_CRASH_SEED` replays a seed (it is printed); `FDW_CRASH_CYCLES` sets the number of
//! faults (4 by default, which `cargo test` runs; the long run is
//! `FDW_CRASH_CYCLES=100 cargo nextest run -p fdw-engine -E 'binary(crash)' --no-capture`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::processes::Processes;
use fdw_client::{Client, ErrorKind, Replication, WriteType};
use fdw_persist::emulation::CloudEmulation;
use fdw_persist::s3_server::S3Server;
use fdw_persist::{S3Store, UnderStore};
use nix::sys::signal::Signal;
use tokio::time::Instant;

const BUCKET: &str = "stage-1";
const NODES: u16 = 3;

const R2W2: Replication = Replication {
    write_type: WriteType::AsyncThrough,
    replicas: 2,
    quorum: 2,
};

/// Object `n`'s bytes: a cheap generator, so nothing is kept to check them later.
fn object(n: u64, len: usize) -> Vec<u8> {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sizes from 4 KiB to 32 MiB, log-uniform: mostly small, some multipart.
fn size(rng: &mut fastrand::Rng) -> usize {
    let exp = rng.f64() * (32.0f64 * 1024.0 / 4.0).log2();
    (4096.0 * exp.exp2()) as usize + rng.usize(..4096)
}

struct Put {
    key: String,
    n: u64,
    len: usize,
    /// `None` if acknowledged; else the error.
    error: Option<String>,
}

/// Puts objects one after another until told to stop.
async fn writer(client: Client, seed: u64, stop: Arc<AtomicBool>) -> Vec<Put> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5752_4954);
    let mut puts = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let len = size(&mut rng);
        let key = format!("crash/{seed}/{n}");
        let result = client.put_with(BUCKET, &key, &object(n, len), R2W2).await;
        puts.push(Put {
            key,
            n,
            len,
            error: result.err().map(|e| e.to_string()),
        });
    }
    puts
}

/// Every running node's status, or `None` while one does not answer.
async fn recovered(client: &Client, before: &[u64]) -> bool {
    for (member, status) in client.status().await {
        let Ok(status) = status else {
            return false;
        };
        let r = status.recovery;
        let id = usize::from(member.id);
        // A survivor must have seen the fault, then covered it; a restarted node sees
        // nothing to recover.
        let saw = before[id] == u64::MAX || r.losses_seen > before[id];
        let done = r.losses_restored == r.losses_seen && r.under_replicated == 0;
        if !(saw && done && status.members.iter().all(|m| m.alive)) {
            return false;
        }
    }
    true
}

async fn losses_seen(client: &Client) -> Vec<u64> {
    let mut seen = vec![u64::MAX; usize::from(NODES)];
    for (member, status) in client.status().await {
        if let Ok(status) = status {
            seen[usize::from(member.id)] = status.recovery.losses_seen;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_workers_are_killed_and_stopped() {
    let seed: u64 = std::env::var("FDW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..1_000_000));
    let cycles: u32 = std::env::var("FDW_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    eprintln!("crash test: seed {seed}, {cycles} faults (replay: FDW_CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let emulation = CloudEmulation {
        seed,
        ..CloudEmulation::s3_standard()
    };
    let (_root, server, mut cluster) = cluster_on_s3("crash", emulation, "").await;
    let s3 = server.config();
    let client = cluster.client().await;

    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(client.clone(), seed, stop.clone()));
    let mut restore_times = Vec::new();
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1500))).await;
        let victim = rng.u16(..NODES);
        let before = losses_seen(&client).await;
        let fault_at = Instant::now();
        if rng.f64() < 0.7 {
            let down = Duration::from_millis(rng.u64(100..2000));
            eprintln!("fault {cycle}: SIGKILL node {victim}, restart after {down:?}");
            cluster.kill(victim);
            tokio::time::sleep(down).await;
            cluster.spawn(victim);
        } else {
            // Longer than the failure timeout (600 ms): it is declared dead.
            let down = Duration::from_millis(rng.u64(1000..2500));
            eprintln!("fault {cycle}: SIGSTOP node {victim}, SIGCONT after {down:?}");
            cluster.signal(victim, Signal::SIGSTOP);
            tokio::time::sleep(down).await;
            cluster.signal(victim, Signal::SIGCONT);
        }
        let mut before = before;
        before[usize::from(victim)] = u64::MAX;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !recovered(&client, &before).await {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: fault {cycle} not recovered from within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = fault_at.elapsed();
        eprintln!("fault {cycle}: every worker recovered {took:?} after the fault");
        restore_times.push(took);
    }
    stop.store(true, Ordering::Release);
    let puts = writing.await.unwrap();

    // Everything drains to S3.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let statuses = client.status().await;
        let backlog: u64 = statuses
            .iter()
            .map(|(_, s)| s.as_ref().map_or(u64::MAX, |s| s.backlog_objects))
            .sum();
        if backlog == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the backlog did not drain: {backlog}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for (member, status) in client.status().await {
        let lost = status.unwrap().recovery.lost_objects;
        assert_eq!(
            lost, 0,
            "seed {seed}: node {} reports lost objects",
            member.id
        );
    }
    let store = S3Store::new(&s3, "lake", "fdw");
    let (mut acknowledged, mut lost, mut failed_absent, mut failed_whole) = (0, 0, 0, 0);
    for put in &puts {
        let expected = object(put.n, put.len);
        let read = read_patiently(&client, &put.key).await;
        let under = format!("{BUCKET}/{}", put.key);
        match &put.error {
            None => {
                acknowledged += 1;
                let ok = read.as_ref().is_ok_and(|got| *got == expected);
                let persisted = store
                    .get(&under, None)
                    .await
                    .is_ok_and(|got| got[..] == expected[..]);
                let crc = store.head(&under).await.unwrap().and_then(|h| h.crc);
                if !ok || !persisted || crc.is_some_and(|c| c != crc32fast::hash(&expected)) {
                    lost += 1;
                    eprintln!(
                        "seed {seed}: LOST {} ({} bytes): read {:?}, persisted {persisted}",
                        put.key,
                        put.len,
                        read.map(|r| r.len())
                    );
                }
            }
            Some(error) => match read {
                Ok(got) => {
                    assert_eq!(got, expected, "seed {seed}: {} is partial", put.key);
                    failed_whole += 1;
                }
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::NotFound, "seed {seed}: {err}");
                    eprintln!("failed put {}: {error}", put.key);
                    failed_absent += 1;
                }
            },
        }
    }
    restore_times.sort();
    eprintln!(
        "crash test, seed {seed}: {} puts, {acknowledged} acknowledged, {lost} lost; \
         {failed_absent} failed and absent, {failed_whole} failed but whole; \
         recovered after each fault in {:?} (min), {:?} (median), {:?} (max)",
        puts.len(),
        restore_times.first(),
        restore_times.get(restore_times.len() / 2),
        restore_times.last()
    );
    assert_eq!(lost, 0, "seed {seed}: acknowledged puts lost");
    assert!(acknowledged > 0, "seed {seed}: nothing was acknowledged");
    // An adopter aborts the uploads a lost primary left open just after its own upload
    // ends, which can be a moment after the backlog reads empty.
    let acknowledged_keys: std::collections::HashSet<String> = puts
        .iter()
        .filter(|p| p.error.is_none())
        .map(|p| format!("fdw/{BUCKET}/{}", p.key))
        .collect();
    let open = |server: &S3Server| -> Vec<String> {
        let open = server.open_uploads().into_iter().map(|(_, key)| key);
        open.filter(|key| acknowledged_keys.contains(key)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !open(&server).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        open(&server).is_empty(),
        "seed {seed}: multipart uploads of acknowledged puts left open: {:?}",
        open(&server)
    );
    // A put that failed may leave one: its primary committed its own copy, no replica
    // got one, and the primary died uploading it. Nobody holds it to take over; S3's
    // AbortIncompleteMultipartUpload lifecycle rule is what cleans those up.
    eprintln!(
        "uploads of failed puts left open: {}",
        server.open_uploads().len()
    );
    cluster.stop_all();
}

/// Three processes persisting to an S3 server in this process that adds `emulation`;
/// `persist` is more of the `[persist]` section.
async fn cluster_on_s3(
    name: &str,
    emulation: CloudEmulation,
    persist: &str,
) -> (tempfile::TempDir, S3Server, Processes) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let server = S3Server::start_emulating(root.path(), emulation)
        .await
        .unwrap();
    let s3 = server.config();
    let extra = format!(
        "[persist]\ndefault = \"s3://lake/fdw\"\npart_size = \"8MiB\"\nfailure_backoff = \"200ms\"\n{persist}\n\n[s3]\nendpoint = \"{}\"\nregion = \"{}\"\n",
        s3.endpoint.clone().unwrap(),
        s3.region
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
    ];
    let cluster = Processes::start(name, usize::from(NODES), "384MiB", &extra, &env);
    (root, server, cluster)
}

/// SIGKILL the primary while its multipart upload is in flight: a survivor takes the
/// object over and completes it in S3, byte for byte, and the dead primary's upload does
/// not stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_multipart_upload_is_taken_over() {
    // 8 MB/s per connection: each 8 MiB part takes about a second.
    let emulation = CloudEmulation {
        connection_bytes_per_sec: Some(8_000_000),
        ..CloudEmulation::none()
    };
    let (_root, server, mut cluster) = cluster_on_s3("mid-multipart", emulation, "").await;
    let client = cluster.client().await;
    let placement = fdw_net::placement::Placement::new(client.members().to_vec());
    let key = common::keys_placed(&placement, BUCKET, &[0], 1).remove(0);
    let data = object(7, (24 << 20) + 11);
    client.put_with(BUCKET, &key, &data, R2W2).await.unwrap();

    common::eventually("node 0's multipart upload is under way", async || {
        server.requests("UploadPart") > 0 && !server.open_uploads().is_empty()
    })
    .await;
    cluster.kill(0);

    let store = S3Store::new(&server.config(), "lake", "fdw");
    let under = format!("{BUCKET}/{key}");
    common::eventually("a survivor has completed the upload", async || {
        store.head(&under).await.unwrap().is_some()
    })
    .await;
    let head = store.head(&under).await.unwrap().unwrap();
    assert_eq!(head.crc, Some(crc32fast::hash(&data)));
    assert!(store.get(&under, None).await.unwrap()[..] == data[..]);
    common::eventually("no multipart upload is left open", async || {
        server.open_uploads().is_empty()
    })
    .await;
    assert_eq!(client.get(BUCKET, &key).await.unwrap(), data);
    let mut taken_over = 0;
    for member in &client.members()[1..] {
        taken_over += client.status_of(member).await.unwrap().recovery.taken_over;
    }
    assert_eq!(taken_over, 1);
    cluster.stop_all();
}

/// Both holders of an unpersisted version stop (SIGSTOP): the witness names it lost, in
/// its status and to a reader. One holder resumes: it takes the upload over, the version
/// is persisted, and it is not lost any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_holders_all_stop_is_named_lost_until_one_resumes() {
    // Uploads wait 5 s after commit: long enough to stop both holders first.
    let (_root, server, cluster) =
        cluster_on_s3("lost", CloudEmulation::none(), "initial_delay = \"5s\"").await;
    let client = cluster.client().await;
    let placement = fdw_net::placement::Placement::new(client.members().to_vec());
    let key = common::keys_placed(&placement, BUCKET, &[0, 1], 1).remove(0);
    let data = object(9, 300_000);
    client.put_with(BUCKET, &key, &data, R2W2).await.unwrap();
    // The witness is told in the background, just after the acknowledgement.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.signal(0, Signal::SIGSTOP);
    cluster.signal(1, Signal::SIGSTOP);

    let witness = client.members()[2].clone();
    let lost_seen = async || {
        let status = client.status_of(&witness).await.unwrap();
        status.recovery.lost_objects
    };
    common::eventually("node 2 names the version lost", async || {
        lost_seen().await == 1
    })
    .await;
    let err = client.head(BUCKET, &key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lost, "{err}");
    assert!(err.to_string().contains(&key), "{err}");

    cluster.signal(1, Signal::SIGCONT);
    let store = S3Store::new(&server.config(), "lake", "fdw");
    common::eventually("the resumed holder persisted it", async || {
        store
            .head(&format!("{BUCKET}/{key}"))
            .await
            .unwrap()
            .is_some()
    })
    .await;
    common::eventually("node 2 no longer names it lost", async || {
        lost_seen().await == 0
    })
    .await;
    cluster.signal(0, Signal::SIGCONT);
    assert_eq!(client.get(BUCKET, &key).await.unwrap(), data);
    cluster.stop_all();
}

/// A get retried as a reader would retry it: `Unavailable` says "try again" (a worker
/// too busy to answer within the request timeout on a loaded machine), not "lost".
/// Bounded, so a key that stays unreadable still counts as lost.
async fn read_patiently(client: &Client, key: &str) -> Result<Vec<u8>, fdw_client::Error> {
    let mut tries = 0;
    loop {
        match client.get(BUCKET, key).await {
            Err(err) if err.is_retryable() && tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            read => return read,
        }
    }
}
