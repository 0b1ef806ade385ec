//! Criterion micro-benchmarks of fdw's components (`benches/`), each measured beside its
//! baseline in the same run, because the machine is shared and noisy:
//!
//! - `pool`: chunk alloc+free, alone and contended, beside a 64 KiB memcpy;
//! - `checksum`: CRC32 beside memcpy of the same bytes, and CRC combining;
//! - `codec`: encoding and validating a put header beside a memcpy of its bytes, and
//!   frame headers;
//! - `placement`: ranking 3, 16 and 128 members for a key beside hashing the key once;
//! - `transport`: fdw puts beside bare quinn request/response and streams, and bare TCP;
//! - `persist`: the persist pipeline's drain to S3 beside plain aws-sdk-s3 uploads, and
//!   the io_uring local-directory store beside `pwrite` + `fsync`;
//! - `compose`: a multipart completion composed in place beside the parts copied through
//!   a client, and memcpy.
//!
//! Run with `cargo bench -p fdw-benches`. The whole-system view is `fdw-bench`.

/// The runtime the cluster benchmarks run on: two workers, one per core of the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A worker's pool of `size_bytes` in 64 KiB chunks, on huge pages where the machine has
/// them, touched at start so first writes do not pay for page faults.
pub fn pool(size_bytes: usize) -> fdw_engine::PoolConfig {
    fdw_engine::PoolConfig {
        size_bytes,
        chunk_size_bytes: 64 << 10,
        huge_pages: fdw_engine::HugePagePolicy::Auto,
        populate: true,
        lock: false,
    }
}
