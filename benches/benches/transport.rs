//! fdw's write path against its transport floor, in one run on one machine:
//!
//! - a 4 KiB put with R=2, W=2 against a bare quinn request/response of 4 KiB;
//! - 64 MiB puts (R=1 and R=2) against a bare quinn stream of 64 MiB;
//! - bare loopback TCP of 64 MiB, so the cost of QUIC itself is visible.
//!
//! Everything runs in this process on loopback, with the same TLS 1.3 mutual
//! authentication for quinn and fdw. Run with `cargo bench -p fdw-benches --bench transport`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fdw_client::{Client, ClientConfig, Replication, WriteType};
use fdw_engine::{HugePagePolicy, LocalCluster, PoolConfig};
use fdw_net::transport::{self, ClusterCa, TransportTuning};
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

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
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

/// One request/response on a bare quinn stream.
async fn quinn_round_trip(conn: &quinn::Connection, data: &[u8]) {
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    for piece in data.chunks(WRITE_BYTES) {
        send.write_all(piece).await.expect("write");
    }
    send.finish().expect("finish");
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await.expect("ack");
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

fn transport(c: &mut Criterion) {
    let rt = runtime();
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
    let pool = PoolConfig {
        size_bytes: 512 << 20,
        chunk_size_bytes: 64 << 10,
        huge_pages: HugePagePolicy::Auto,
        populate: true,
        lock: false,
    };
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
    let small = vec![7u8; SMALL];
    let large = vec![9u8; LARGE];
    let replicas = |r| Replication {
        write_type: WriteType::AsyncThrough,
        replicas: r,
        quorum: r,
    };

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
    for r in [1, 2] {
        group.bench_function(format!("fdw put R={r} W={r}"), |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    client
                        .put_with("bench", "large", black_box(&large), replicas(r))
                        .await
                        .expect("put");
                })
            })
        });
    }
    group.finish();
    rt.block_on(cluster.shutdown());
}

criterion_group!(benches, transport);
criterion_main!(benches);
