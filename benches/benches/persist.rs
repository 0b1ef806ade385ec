//! The persist pipeline against its baselines, in one run on one machine:
//!
//! 1. **Drain to S3.** `FDW_BENCH_PERSIST_BYTES` (default 1 GiB) of 64 MiB objects are put
//!    into a three-worker cluster (R=1) whose pipeline waits `initial_delay` before
//!    uploading, so that the measured window — from the first upload request the S3
//!    server sees until every object is persisted — is the pipeline alone. Beside it,
//!    plain aws-sdk-s3 multipart uploads of the same bytes from memory, with the same
//!    part size and the same number of objects in flight. Both go to the same
//!    in-process S3 server (s3s over s3s-fs on the local disk), which verifies every
//!    CRC32.
//! 2. **Read-through.** 16 objects of 16 MiB written `THROUGH` (persisted, then not
//!    cached) are read with the SDK, one at a time: first from S3 through fdw (fetched,
//!    checked, cached), then again from fdw's memory. Beside it, plain aws-sdk-s3
//!    `GetObject` of the same objects from the same server.
//! 3. **Local directory.** 64 objects of 4 MiB written durably (temporary file, writes,
//!    fsync, rename, directory fsync) through fdw's io_uring store, and through plain
//!    `pwrite` + `fsync` calls doing the same steps.
//!
//! 4. **Fencing.** 16 objects of 4 KiB persisted one at a time to an S3 server with the
//!    cloud emulation's defaults (100–200 ms first byte): fenced (`persist_version`:
//!    `HeadObject`, then a conditional `PutObject` recording the version), beside a
//!    plain `PutObject` of the same bytes. This is what fencing costs per upload.
//!
//! Rounds alternate between each pair so the machine's noise falls on both alike. Run
//! with `cargo bench -p fdw-benches --bench persist`.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use fdw_client::{Replication, WriteType};
use fdw_engine::LocalCluster;
use fdw_persist::emulation::CloudEmulation;
use fdw_persist::s3_server::S3Server;
use fdw_persist::{
    Fence, LocalDir, ObjectBytes, Payload, RetryPolicy, S3Store, UnderStore, persist_version,
    upload,
};
use fdw_tools::bench::baseline::put_s3_all;
use fdw_tools::bench::fdw_drain;

const OBJECT: usize = 64 << 20;
const PART: u64 = 16 << 20;
const CONCURRENCY: usize = 8;
const ROUNDS: usize = 3;

fn now() -> std::time::Instant {
    #[allow(clippy::disallowed_methods)] // benchmark wall time is the measurement
    std::time::Instant::now()
}

fn total_bytes() -> usize {
    std::env::var("FDW_BENCH_PERSIST_BYTES")
        .ok()
        .and_then(|v| v.parse::<bytesize::ByteSize>().ok())
        .map_or(1 << 30, |b| b.as_u64() as usize)
}

/// Object `n`'s bytes: `fdw-bench`'s reproducible generator, seed 1.
fn object(n: usize, len: usize) -> Bytes {
    fdw_tools::bench::object(1, n as u64, len as u64)
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

const READ_OBJECT: usize = 16 << 20;

/// fdw read-through: write `THROUGH`, so every object ends persisted and evicted; then
/// read each through fdw twice (from S3, then cached), and directly from S3.
async fn read_through_round(
    server: &S3Server,
    direct: &S3Store,
    objects: &[Bytes],
    round: usize,
) -> [Duration; 3] {
    let s3 = server.config();
    let pool =
        fdw_benches::pool((objects.len() * READ_OBJECT + (64 << 20)).next_multiple_of(2 << 20));
    let cluster = LocalCluster::start(1, pool, |c| {
        c.persist.s3 = Some(s3.clone());
        c.persist.default_location = Some("s3://lake/fdw".parse().expect("location"));
        c.persist.part_bytes = PART;
    })
    .await
    .expect("cluster");
    let client = cluster.client("bench").await.expect("client");
    let through = Replication {
        write_type: WriteType::Through,
        replicas: 1,
        quorum: 1,
    };
    let key = |n: usize| format!("rt-{round}/{n}");
    for (n, data) in objects.iter().enumerate() {
        client
            .put_bytes("bench", &key(n), data.clone(), through)
            .await
            .expect("put");
    }
    let mut times = [Duration::ZERO; 3];
    for (pass, time) in times.iter_mut().take(2).enumerate() {
        let started = now();
        for (n, data) in objects.iter().enumerate() {
            let read = client.get("bench", &key(n)).await.expect("get");
            assert!(read == data[..], "pass {pass}: object {n} differs");
        }
        *time = started.elapsed();
    }
    let started = now();
    for (n, data) in objects.iter().enumerate() {
        let read = direct
            .get(&format!("fdw/bench/{}", key(n)), None)
            .await
            .expect("direct get");
        assert!(read == data[..], "direct: object {n} differs");
    }
    times[2] = started.elapsed();
    cluster.shutdown().await;
    times
}

/// Plain file calls doing what the io_uring store does: temporary file, `pwrite`s,
/// `fsync`, rename, directory `fsync`.
fn pwrite_fsync(dir: &Path, key: &str, pieces: &[Bytes]) {
    let tmp = dir.join(format!(".tmp-{key}"));
    let file = std::fs::File::create(&tmp).expect("create");
    let mut offset = 0;
    for piece in pieces {
        file.write_all_at(piece, offset).expect("pwrite");
        offset += piece.len() as u64;
    }
    file.sync_all().expect("fsync");
    drop(file);
    std::fs::rename(&tmp, dir.join(key)).expect("rename");
    std::fs::File::open(dir)
        .expect("dir")
        .sync_all()
        .expect("dir fsync");
}

async fn local_dir_round(
    store: &LocalDir,
    plain: &Path,
    objects: &[Vec<Bytes>],
    round: usize,
) -> (Duration, Duration) {
    let started = now();
    for (n, pieces) in objects.iter().enumerate() {
        let crc = 0; // not checked by a local directory's single PUT
        store
            .put_object(
                &format!("uring-{round}-{n}"),
                Payload::new(pieces.clone(), crc),
                &fdw_persist::Fence::default(),
            )
            .await
            .expect("io_uring write");
    }
    let uring = started.elapsed();
    let started = now();
    for (n, pieces) in objects.iter().enumerate() {
        pwrite_fsync(plain, &format!("plain-{round}-{n}"), pieces);
    }
    (uring, started.elapsed())
}

fn main() {
    let runtime = fdw_benches::runtime();
    let total = total_bytes();
    let count = total.div_ceil(OBJECT);
    runtime.block_on(async {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("lake")).expect("bucket");
        let server = S3Server::start(root.path()).await.expect("s3 server");
        let direct = S3Store::new(&server.config(), "lake", "");
        let objects: Vec<Bytes> = (0..count).map(|n| object(n, OBJECT)).collect();
        let bytes = count * OBJECT;
        println!(
            "persist drain: {count} objects of 64 MiB ({} MiB), {CONCURRENCY} in flight, \
             {} MiB parts, in-process S3 server on the local disk",
            bytes >> 20,
            PART >> 20
        );
        let (mut fdw, mut sdk) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            sdk.push(mib_per_s(
                bytes,
                put_s3_all(
                    direct.client(),
                    "lake",
                    &format!("sdk-{round}"),
                    &objects,
                    PART as usize,
                    CONCURRENCY,
                )
                .await
                .expect("plain SDK uploads"),
            ));
            let drained = fdw_drain(
                &server,
                &objects,
                3,
                PART,
                CONCURRENCY,
                &format!("fdw-{round}"),
            )
            .await
            .expect("drain");
            fdw.push(mib_per_s(bytes, drained));
            println!(
                "  round {round}: aws-sdk-s3 {:.0} MiB/s, fdw pipeline {:.0} MiB/s",
                sdk[round], fdw[round]
            );
        }
        report(
            "aws-sdk-s3 multipart from memory",
            &sdk,
            "fdw persist drain",
            &fdw,
        );
        drop(objects);

        let objects: Vec<Bytes> = (0..16).map(|n| object(n, READ_OBJECT)).collect();
        let bytes = objects.len() * READ_OBJECT;
        println!("\nread-through: 16 objects of 16 MiB, one get at a time");
        let (mut first, mut cached, mut sdk) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let [f, c, d] = read_through_round(&server, &direct, &objects, round).await;
            first.push(mib_per_s(bytes, f));
            cached.push(mib_per_s(bytes, c));
            sdk.push(mib_per_s(bytes, d));
            println!(
                "  round {round}: aws-sdk-s3 GetObject {:.0} MiB/s, fdw read-through {:.0} MiB/s, \
                 fdw cached {:.0} MiB/s",
                sdk[round], first[round], cached[round]
            );
        }
        report("aws-sdk-s3 GetObject", &sdk, "fdw read-through", &first);
        report("aws-sdk-s3 GetObject", &sdk, "fdw cached read", &cached);
        drop(objects);

        let uring_dir = root.path().join("uring");
        let plain_dir = root.path().join("plain");
        std::fs::create_dir(&plain_dir).expect("dir");
        let store = LocalDir::new(&uring_dir).expect("local dir");
        let files: Vec<Vec<Bytes>> = (0..64)
            .map(|n| {
                let data = object(n, 4 << 20);
                (0..data.len())
                    .step_by(64 << 10)
                    .map(|at| data.slice(at..at + (64 << 10)))
                    .collect()
            })
            .collect();
        println!("\nlocal directory: 64 objects of 4 MiB each as 64 KiB chunks, written durably");
        let (mut uring, mut plain) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (u, p) = local_dir_round(&store, &plain_dir, &files, round).await;
            uring.push(mib_per_s(256 << 20, u));
            plain.push(mib_per_s(256 << 20, p));
            println!(
                "  round {round}: pwrite+fsync {:.0} MiB/s, io_uring {:.0} MiB/s",
                plain[round], uring[round]
            );
        }
        report("pwrite + fsync", &plain, "fdw io_uring store", &uring);

        let emulated = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(emulated.path().join("lake")).expect("bucket");
        let cloud = S3Server::start_emulating(emulated.path(), CloudEmulation::s3_standard())
            .await
            .expect("s3 server");
        let s3 = S3Store::new(&cloud.config(), "lake", "");
        let small: Vec<ObjectBytes> = (0..16)
            .map(|n| ObjectBytes::from_bytes(object(n, 4 << 10), 64 << 10))
            .collect();
        println!(
            "
fencing: 16 objects of 4 KiB, one at a time, to an S3 with 100-200 ms first byte"
        );
        let (mut fenced, mut unfenced) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let started = now();
            for (n, o) in small.iter().enumerate() {
                let key = format!("plain-{round}-{n}");
                upload(
                    &s3,
                    &key,
                    o,
                    &Fence::default(),
                    PART,
                    &RetryPolicy::default(),
                )
                .await
                .expect("plain put");
            }
            unfenced.push(started.elapsed().as_secs_f64() * 1e3 / small.len() as f64);
            let started = now();
            for (n, o) in small.iter().enumerate() {
                let key = format!("fenced-{round}-{n}");
                persist_version(&s3, &key, Some(o), 1, PART, &RetryPolicy::default())
                    .await
                    .expect("fenced put");
            }
            fenced.push(started.elapsed().as_secs_f64() * 1e3 / small.len() as f64);
            println!(
                "  round {round}: PutObject {:.0} ms, fenced {:.0} ms per object",
                unfenced[round], fenced[round]
            );
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (u, f) = (median(&mut unfenced), median(&mut fenced));
        println!(
            "  median: PutObject {u:.0} ms, fenced {f:.0} ms per object: {:.2}x",
            f / u
        );
    });
    std::io::stdout().flush().expect("flush");
}

/// Prints the medians and their ratio.
fn report(base_name: &str, base: &[f64], name: &str, ours: &[f64]) {
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, o) = (median(base), median(ours));
    println!(
        "  median: {base_name} {b:.0} MiB/s, {name} {o:.0} MiB/s: {:.0} % of the baseline",
        100.0 * o / b
    );
}
