//! CRC32 throughput beside memcpy of the same bytes in the same run: memcpy is the
//! memory-bandwidth reference, and CRC on the data path must stay a fraction of it.
//! Also the cost of combining chunk CRCs into the object CRC, and of the MD5 a writer
//! computes for the ETag (the trailer of every put).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("bytes");
    for size in [4 * 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
        // The destination starts half a page off the source's alignment: two heap
        // buffers with equal low address bits make memcpy stall on 4K aliasing, which
        // would measure the allocator's placement rather than memory bandwidth.
        let mut dst_buf = vec![0u8; size + 4096];
        let shift = (data.as_ptr() as usize + 2048 - dst_buf.as_ptr() as usize % 4096) % 4096;
        let dst = &mut dst_buf[shift..shift + size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("crc32", size), &data, |b, data| {
            b.iter(|| crc32fast::hash(black_box(data)))
        });
        group.bench_with_input(BenchmarkId::new("md5", size), &data, |b, data| {
            b.iter(|| fdw_net::wire::Digest::of_bytes(black_box(data)))
        });
        group.bench_with_input(BenchmarkId::new("memcpy", size), &data, |b, data| {
            b.iter(|| dst.copy_from_slice(black_box(data)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("combine");
    // A 64 MiB object of 64 KiB chunks: 1024 chunk CRCs folded into one.
    let crcs: Vec<u32> = (0..1024u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    group.throughput(Throughput::Elements(crcs.len() as u64));
    group.bench_function("1024 chunk CRCs", |b| {
        b.iter(|| {
            let mut whole = crc32fast::Hasher::new();
            for &crc in black_box(&crcs) {
                whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, 64 * 1024));
            }
            whole.finalize()
        })
    });
    group.finish();
}

criterion_group!(benches, checksum);
criterion_main!(benches);
