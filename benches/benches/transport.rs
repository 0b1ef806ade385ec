//! fdw's write path against its transport floor, in one run on one machine:
//!
//! - a 4 KiB put with R=2, W=2 against a bare quinn request/response of 4 KiB, as
//!   criterion means and as an interleaved p50/p90/p99 table (hdrhistogram);
//! - a Parquet footer read (the last 8 bytes of 8 MiB) in one request, against a head
//!   and then the range (what the S3 gateway did before ranges were resolved remotely);
//! - 64 MiB puts (R=1 and R=2) against a bare quinn stream of 64 MiB, the stream written
//!   both by copy (`write_all`) and by reference (`write_chunk`);
//! - client fan-out against primary fan-out: the client sending the object to both
//!   replicas itself, on the replicas' own path, with a version it picks;
//! - bare loopback TCP of 64 MiB, so the cost of QUIC itself is visible.
//!
//! Everything runs in this process on loopback, with the same TLS 1.3 mutual
//! authentication for quinn and fdw. Run with `cargo bench -p fdw-benches --bench transport`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use fdw_client::{ByteRange, Client, ClientConfig, Replication, WriteType};
use fdw_engine::LocalCluster;
use fdw_net::placement::{Member, Placement};
use fdw_net::transport::{self, ClusterCa, NodeIdentity, Peers, TransportTuning};
use fdw_net::wire::{ObjectRef, PutHeader, Request, Response};
use fdw_net::{BucketName, ObjectKey, Version};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

const SMALL: usize = 4 * 1024;
const LARGE: usize = 64 * 1024 * 1024;
const WRITE_BYTES: usize = 64 * 1024;

/// The QUIC tuning under test: defaults, with `FDW_BENCH_MAX_UDP_PAYLOAD` overriding the
/// MTU-discovery ceiling, to compare packet sizes in otherwise identical runs.
fn tuning() -> TransportTuning {
    let mut tuning = TransportTuning::default();
    if let Some(bytes) = std::env::var("FDW_BENCH_MAX_UDP_PAYLOAD")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tuning.max_udp_payload_bytes = bytes;
    }
    tuning
}

/// A bare quinn server: reads each stream to its end, answers 8 bytes.
async fn quinn_sink(ca: &ClusterCa) -> SocketAddr {
    let socket = transport::bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let endpoint = transport::server_endpoint(&ca.issue("sink").expect("cert"), socket, &tuning())
        .expect("endpoint");
    let addr = endpoint.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; WRITE_BYTES];
                        while let Ok(Some(_)) = recv.read(&mut buf).await {}
                        let _ = send.write_all(&[0u8; 8]).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    addr
}

/// One request/response on a bare quinn stream, the data copied into quinn.
async fn quinn_round_trip(conn: &quinn::Connection, data: &[u8]) {
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    for piece in data.chunks(WRITE_BYTES) {
        send.write_all(piece).await.expect("write");
    }
    send.finish().expect("finish");
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await.expect("ack");
}

/// As [`quinn_round_trip`], the data handed to quinn by reference: the floor.
async fn quinn_round_trip_bytes(conn: &quinn::Connection, data: &Bytes) {
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    for at in (0..data.len()).step_by(WRITE_BYTES) {
        let end = (at + WRITE_BYTES).min(data.len());
        send.write_chunk(data.slice(at..end)).await.expect("write");
    }
    send.finish().expect("finish");
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await.expect("ack");
}

/// Client fan-out, measured on the wire: the client sends the object to both of its
/// replicas at once on the replicas' path (a put that carries its version), and waits
/// for both. fdw does not ship this mode: a client-chosen version breaks the primary's
/// version order. It is here to measure what that order costs.
struct ClientFanOut {
    peers: Peers,
    placement: Placement,
    frame_bytes: u32,
    next_version: std::sync::atomic::AtomicU64,
}

impl ClientFanOut {
    fn new(members: &[Member], identity: &NodeIdentity, frame_bytes: u32) -> Self {
        let endpoint = transport::client_endpoint(identity, ([127, 0, 0, 1], 0).into(), &tuning())
            .expect("client endpoint");
        Self {
            peers: Peers::new(endpoint, Duration::from_secs(1)),
            placement: Placement::new(members.to_vec()),
            frame_bytes,
            next_version: 1.into(),
        }
    }

    async fn put(&self, key: &str, data: &Bytes) {
        let object = ObjectRef {
            bucket: BucketName::new("bench").expect("bucket"),
            key: ObjectKey::new(key).expect("key"),
        };
        let frame = self.frame_bytes as usize;
        let crcs: Vec<u32> = data.chunks(frame).map(crc32fast::hash).collect();
        let mut whole = crc32fast::Hasher::new();
        for (piece, crc) in data.chunks(frame).zip(&crcs) {
            whole.combine(&crc32fast::Hasher::new_with_initial_len(
                *crc,
                piece.len() as u64,
            ));
        }
        // The writer's share of a put, as the SDK does it: the MD5 for the trailer.
        let digest = fdw_net::wire::Digest::of_bytes(data);
        let version = self
            .next_version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let header = Request::Put(PutHeader {
            object: object.clone(),
            len: data.len() as u64,
            crc: Some(whole.finalize()),
            frame_bytes: self.frame_bytes,
            replication: Replication::new(WriteType::AsyncThrough, 2, 2).expect("replication"),
            forwarded: Some(fdw_net::wire::Forwarded {
                version: Version(version),
                primary: 1,
            }),
            metadata: Default::default(),
            condition: None,
        })
        .encode();
        let replicas = self.placement.preference_list(&object.bucket, &object.key);
        let send_to = |member: &Member| {
            let member = member.clone();
            let header = &header;
            let crcs = &crcs;
            let digest = &digest;
            async move {
                let conn = self.peers.connection(&member).await.expect("connect");
                let (mut send, mut recv) = conn.open_bi().await.expect("open");
                transport::write_message(&mut send, header)
                    .await
                    .expect("header");
                for (i, crc) in crcs.iter().enumerate() {
                    let piece = data.slice(i * frame..((i + 1) * frame).min(data.len()));
                    transport::write_frame_bytes(&mut send, *crc, &[piece])
                        .await
                        .expect("frame");
                }
                transport::write_trailer(&mut send, digest)
                    .await
                    .expect("trailer");
                send.finish().expect("finish");
                match transport::read_response(&mut recv).await.expect("reply") {
                    Response::Stored { .. } => {}
                    other => panic!("replica refused: {other:?}"),
                }
            }
        };
        tokio::join!(send_to(replicas[0]), send_to(replicas[1]));
    }
}

/// A bare TCP server: reads each connection to EOF, answers 1 byte.
async fn tcp_sink() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; WRITE_BYTES];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = stream.write_all(&[0]).await;
            });
        }
    });
    addr
}

async fn tcp_round_trip(addr: SocketAddr, data: &[u8]) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(data).await.expect("write");
    stream.shutdown().await.expect("shutdown");
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await.expect("ack");
}

fn timed<F: std::future::Future<Output = ()>>(
    rt: &Runtime,
    iters: u64,
    mut f: impl FnMut() -> F,
) -> Duration {
    rt.block_on(async {
        #[allow(clippy::disallowed_methods)] // benchmark wall time is the measurement
        let start = std::time::Instant::now();
        for _ in 0..iters {
            f().await;
        }
        start.elapsed()
    })
}

/// p50, p90 and p99 of 4 KiB round trips, the three kinds interleaved one by one so
/// the machine's noise falls on all of them alike.
fn latency_table(
    rt: &Runtime,
    quinn_conn: &quinn::Connection,
    client: &Client,
    fan_out: &ClientFanOut,
) {
    const ROUNDS: usize = 5_000;
    let small = vec![7u8; SMALL];
    let shared = Bytes::from(small.clone());
    let names = [
        "bare quinn request-response",
        "fdw put R=2 W=2 (primary fan-out)",
        "client fan-out R=2 (wire-level)",
    ];
    let mut histograms: Vec<Histogram<u64>> = (0..names.len())
        .map(|_| Histogram::new(3).expect("histogram"))
        .collect();
    rt.block_on(async {
        for round in 0..ROUNDS + ROUNDS / 10 {
            for (kind, histogram) in histograms.iter_mut().enumerate() {
                #[allow(clippy::disallowed_methods)] // benchmark wall time is the measurement
                let start = std::time::Instant::now();
                match kind {
                    0 => quinn_round_trip(quinn_conn, &small).await,
                    1 => {
                        client
                            .put_with("bench", "small", &small, replicas(2))
                            .await
                            .expect("put");
                    }
                    _ => fan_out.put("fanout-small", &shared).await,
                }
                // The first tenth warms up.
                if round >= ROUNDS / 10 {
                    histogram
                        .record(start.elapsed().as_nanos() as u64)
                        .expect("record");
                }
            }
        }
    });
    let base = &histograms[0];
    println!("\n4 KiB round trips, {ROUNDS} each, interleaved (µs; ratio to bare quinn):");
    println!("{:<36} {:>14} {:>14} {:>14}", "", "p50", "p90", "p99");
    for (name, h) in names.iter().zip(&histograms) {
        let cell = |q: f64| {
            let v = h.value_at_quantile(q) as f64;
            format!(
                "{:.0} ({:.2}×)",
                v / 1e3,
                v / base.value_at_quantile(q) as f64
            )
        };
        println!(
            "{name:<36} {:>14} {:>14} {:>14}",
            cell(0.5),
            cell(0.9),
            cell(0.99)
        );
    }
}

fn replicas(r: u8) -> Replication {
    Replication {
        write_type: WriteType::AsyncThrough,
        replicas: r,
        quorum: r,
    }
}

/// As [`replicas`], with the digest given, so the SDK does not hash the bytes: the put
/// without its MD5, beside the put with it, to measure what the ETag costs.
fn unhashed(r: u8, data: &[u8]) -> fdw_client::PutOptions {
    fdw_client::PutOptions {
        digest: Some(fdw_net::wire::Digest::of_bytes(data)),
        ..replicas(r).into()
    }
}

fn transport(c: &mut Criterion) {
    let rt = fdw_benches::runtime();
    let ca = ClusterCa::generate().expect("ca");
    let client_identity = ca.issue("bench-client").expect("cert");
    let (quinn_conn, tcp_addr) = rt.block_on(async {
        let addr = quinn_sink(&ca).await;
        let endpoint =
            transport::client_endpoint(&client_identity, ([127, 0, 0, 1], 0).into(), &tuning())
                .expect("client endpoint");
        (
            transport::connect(&endpoint, "sink", addr)
                .await
                .expect("connect"),
            tcp_sink().await,
        )
    });
    let pool = fdw_benches::pool(512 << 20);
    let (cluster, client) = rt.block_on(async {
        let cluster = LocalCluster::start(3, pool, |c| c.tuning = tuning())
            .await
            .expect("cluster");
        let identity = cluster.client_identity("bench").expect("cert");
        let mut config = ClientConfig::new(cluster.members().to_vec());
        config.tuning = tuning();
        let client = Client::connect(config, &identity).await.expect("client");
        (cluster, client)
    });
    let fan_out = rt.block_on(async {
        ClientFanOut::new(
            cluster.members(),
            &cluster.client_identity("bench-fan-out").expect("cert"),
            client.frame_bytes(),
        )
    });
    let small = vec![7u8; SMALL];
    let large = Bytes::from(vec![9u8; LARGE]);

    let mut group = c.benchmark_group("4KiB");
    group.throughput(Throughput::Bytes(SMALL as u64));
    group.bench_function("bare quinn request-response", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || {
                quinn_round_trip(&quinn_conn, black_box(&small))
            })
        })
    });
    // Overwriting one key keeps memory bounded: each version supersedes the last.
    group.bench_function("fdw put R=2 W=2", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                client
                    .put_with("bench", "small", black_box(&small), replicas(2))
                    .await
                    .expect("put");
            })
        })
    });
    let given = unhashed(2, &small);
    group.bench_function("fdw put R=2 W=2, MD5 not computed", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                client
                    .put_with("bench", "small", black_box(&small), given.clone())
                    .await
                    .expect("put");
            })
        })
    });
    group.finish();

    // A Parquet reader's first request: the last 8 bytes of a file whose length it does
    // not know. The replica resolves the range in one request; the gateway used to ask
    // for the length first.
    rt.block_on(client.put_bytes("bench", "footer", large.slice(..8 << 20), replicas(2)))
        .expect("put");
    let mut group = c.benchmark_group("footer of 8MiB");
    group.bench_function("fdw read of the last 8 bytes, one request", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                let (_, tail) = client
                    .read("bench", "footer", Some(ByteRange::Last(8)))
                    .await
                    .expect("read");
                black_box(tail);
            })
        })
    });
    group.bench_function("fdw head, then the last 8 bytes", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                let len = client.head("bench", "footer").await.expect("head").len;
                let tail = client
                    .get_range("bench", "footer", len - 8..len)
                    .await
                    .expect("read");
                black_box(tail);
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("64MiB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(LARGE as u64));
    group.bench_function("bare TCP stream", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || tcp_round_trip(tcp_addr, black_box(&large))))
    });
    group.bench_function("bare quinn stream", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || {
                quinn_round_trip(&quinn_conn, black_box(&large))
            })
        })
    });
    group.bench_function("bare quinn stream, by reference", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || {
                quinn_round_trip_bytes(&quinn_conn, black_box(&large))
            })
        })
    });
    for r in [1, 2] {
        group.bench_function(format!("fdw put R={r} W={r}"), |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    client
                        .put_bytes("bench", "large", black_box(large.clone()), replicas(r))
                        .await
                        .expect("put");
                })
            })
        });
        let given = unhashed(r, &large);
        group.bench_function(format!("fdw put R={r} W={r}, MD5 not computed"), |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    client
                        .put_bytes("bench", "large", black_box(large.clone()), given.clone())
                        .await
                        .expect("put");
                })
            })
        });
    }
    group.bench_function("client fan-out R=2 (wire-level)", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || fan_out.put("fanout-large", &large)))
    });
    group.finish();
    latency_table(&rt, &quinn_conn, &client, &fan_out);
    rt.block_on(cluster.shutdown());
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    transport(&mut criterion);
    criterion.final_summary();
}
