//! Placement beside its floor, in the same run: ranking the members of a cluster for
//! one key (a hash per member, then a sort) against hashing the key once, the least
//! any placement must do. Every put and get pays it once.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fdw_net::placement::{Member, Placement};
use fdw_net::{BucketName, ObjectKey};

fn placement(c: &mut Criterion) {
    let bucket = BucketName::new("stage-1").expect("bucket");
    let key = ObjectKey::new("year=2026/month=11/part-00042.parquet").expect("key");
    let mut group = c.benchmark_group("preference list");
    for members in [3u16, 16, 128] {
        let placement = Placement::new(
            (0..members)
                .map(|id| Member {
                    id,
                    name: format!("node-{id}"),
                    addr: ([127, 0, 0, 1], 7000 + id).into(),
                })
                .collect(),
        );
        group.bench_with_input(
            BenchmarkId::new("rank members", members),
            &placement,
            |b, p| b.iter(|| p.preference_list(black_box(&bucket), black_box(&key)).len()),
        );
    }
    group.bench_function("xxh3 of the key alone", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(key.as_str().as_bytes())))
    });
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
