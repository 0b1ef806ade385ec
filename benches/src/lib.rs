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
//!   the io_uring local-directory store beside `pwrite` + `fsync`.
//!
//! Run with `cargo bench -p fdw-benches`. The whole-system view is `fdw-bench`.
