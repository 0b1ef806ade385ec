//! Chunk allocation and release, single-threaded and with both cores contending, beside
//! the cost of touching the same chunk (a 64 KiB memcpy) as the reference for what
//! allocation must stay small against.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fdw_engine::{HugePagePolicy, Pool, PoolConfig};

const CHUNK: usize = 64 * 1024;

fn pool() -> Pool {
    Pool::new(&PoolConfig {
        size_bytes: 256 * CHUNK,
        chunk_size_bytes: CHUNK,
        huge_pages: HugePagePolicy::Auto,
        populate: true,
        lock: false,
    })
    .expect("bench pool")
}

fn alloc_free(c: &mut Criterion) {
    let pool = pool();
    println!("pool backing: {}", pool.backing());
    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Elements(1));
    group.bench_function("alloc+free", |b| {
        b.iter(|| drop(black_box(pool.try_alloc().expect("pool has room"))))
    });
    group.bench_function("alloc+free 2 threads", |b| {
        b.iter_custom(|iters| {
            std::thread::scope(|s| {
                let other = s.spawn(|| {
                    for _ in 0..iters {
                        drop(black_box(pool.try_alloc().expect("pool has room")));
                    }
                });
                #[allow(clippy::disallowed_methods)] // benchmark wall time is the measurement
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    drop(black_box(pool.try_alloc().expect("pool has room")));
                }
                let elapsed = start.elapsed();
                other.join().expect("contender thread");
                elapsed
            })
        })
    });
    let src = vec![7u8; CHUNK];
    let mut chunk = pool.try_alloc().expect("pool has room");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    group.bench_function("memcpy 64 KiB into a chunk (reference)", |b| {
        b.iter(|| chunk.as_mut_slice().copy_from_slice(black_box(&src)))
    });
    group.finish();
}

criterion_group!(benches, alloc_free);
criterion_main!(benches);
