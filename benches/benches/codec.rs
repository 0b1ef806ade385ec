//! The wire codec beside the memcpy of the same bytes, in the same run: encoding a put
//! header and decoding it (preamble, rkyv validation, conversion to owned types) are
//! paid once per request, so they must stay a negligible share of a round trip; frame
//! headers are paid once per 64 KiB chunk.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fdw_client::{Replication, WriteType};
use fdw_net::wire::{self, FrameHeader, ObjectRef, PutHeader, Request};
use fdw_net::{BucketName, ObjectKey, Version};

fn codec(c: &mut Criterion) {
    let request = Request::Put(PutHeader {
        object: ObjectRef {
            bucket: BucketName::new("stage-1").expect("bucket"),
            key: ObjectKey::new("year=2026/month=11/part-00042.parquet").expect("key"),
        },
        len: 64 << 20,
        crc: Some(0xdead_beef),
        frame_bytes: 64 << 10,
        replication: Replication::new(WriteType::AsyncThrough, 2, 2).expect("replication"),
        forwarded: Some(fdw_net::wire::Forwarded {
            version: Version(1_795_493_237_828_673),
            primary: 1,
        }),
        metadata: Default::default(),
        condition: None,
    });
    let encoded = request.encode();
    let mut copy = vec![0u8; encoded.len()];
    let mut group = c.benchmark_group("put header");
    group.bench_function("encode", |b| b.iter(|| black_box(&request).encode()));
    group.bench_function("decode + validate", |b| {
        b.iter(|| wire::decode_request(black_box(&encoded)).expect("valid"))
    });
    group.bench_function(format!("memcpy of its {} bytes", encoded.len()), |b| {
        b.iter(|| copy.copy_from_slice(black_box(&encoded)))
    });
    group.finish();

    let frame = FrameHeader {
        len: 64 << 10,
        crc: 0x1234_5678,
    };
    let bytes = frame.encode();
    let mut group = c.benchmark_group("frame header");
    group.bench_function("encode", |b| b.iter(|| black_box(frame).encode()));
    group.bench_function("decode + validate", |b| {
        b.iter(|| FrameHeader::decode(black_box(&bytes), 0, 64 << 20, 64 << 10).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
