//! `fdw-bench`: the whole system measured beside its baselines, in the same run, on the
//! same machine, at the same object sizes — because the machine is shared and noisy, a
//! figure means something only next to its baseline.
//!
//! Workloads ([`Workloads`]):
//! - **put**: latency of one put at a time, per object size and replication setting,
//!   beside a bare quinn request/response of the same size, a plain aws-sdk-s3 upload
//!   and a local file write + fsync;
//! - **get**: latency of one get at a time, beside a bare quinn response of the same
//!   size and a plain aws-sdk-s3 `GetObject`;
//! - **put-throughput**: 1 MiB puts at several client concurrencies, beside quinn
//!   streams and aws-sdk-s3 uploads at the same concurrency;
//! - **drain**: the persist pipeline's drain rate to S3, beside plain aws-sdk-s3
//!   multipart uploads of the same bytes at the same concurrency;
//! - **pipeline** ([`pipeline`]): the seed experiment, four stages in two frameworks
//!   through the S3 API, directly against S3 and through fdw's gateway.
//!
//! The samples of a cell's systems are taken in turn, one by one, so noise falls on
//! all of them alike. S3 is the in-process server behind the cloud emulation
//! ([`CloudEmulation`]): fdw's under-store and the direct baseline talk to the same one.

pub mod baseline;
pub mod machine;
pub mod pipeline;
pub mod plot;
pub mod report;
pub mod table;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use fdw_persist::emulation::CloudEmulation;

pub use report::{Latency, Report, Series, Settings};
pub use workload::{fdw_drain, object, run};

/// Which workloads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workloads {
    /// Put latency by size and replication.
    pub put: bool,
    /// Get latency by size.
    pub get: bool,
    /// Put throughput by concurrency.
    pub throughput: bool,
    /// Persist drain rate.
    pub drain: bool,
}

/// Where fdw runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Workers started in this process, on loopback, persisting to the emulated S3.
    Local {
        /// How many.
        nodes: u16,
        /// Memory pool of each.
        pool_bytes: u64,
    },
    /// A running cluster, from its TOML file (the drain workload needs a local one).
    Running {
        /// The cluster's TOML file.
        config: PathBuf,
        /// Client certificate name in its certs directory.
        identity: String,
    },
}

/// Everything a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What to run.
    pub workloads: Workloads,
    /// Object sizes of the put and get workloads.
    pub sizes: Vec<u64>,
    /// (replicas, quorum) settings of the put workload.
    pub replications: Vec<(u8, u8)>,
    /// Client concurrencies of the throughput workload.
    pub concurrencies: Vec<u32>,
    /// Bytes the drain workload persists.
    pub drain_bytes: u64,
    /// Multiplies every sample count (1.0: the standard run).
    pub scale: f64,
    /// Seed of the data and of the emulation.
    pub seed: u64,
    /// The S3 server's behaviour.
    pub emulation: CloudEmulation,
    /// Where fdw runs.
    pub target: Target,
    /// Multipart part size, for fdw's pipeline and the S3 baseline alike.
    pub part_bytes: u64,
}

impl Plan {
    /// The standard run: every workload, the sizes and settings, S3 emulated
    /// as in [`CloudEmulation::s3_standard`], on a local three-worker cluster.
    pub fn standard() -> Self {
        Self {
            workloads: Workloads {
                put: true,
                get: true,
                throughput: true,
                drain: true,
            },
            sizes: vec![4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20],
            replications: vec![(1, 1), (2, 2), (3, 2), (3, 3)],
            concurrencies: vec![1, 4, 16],
            drain_bytes: 256 << 20,
            scale: 1.0,
            seed: 1,
            emulation: CloudEmulation::s3_standard(),
            target: Target::Local {
                nodes: 3,
                pool_bytes: 1 << 30,
            },
            part_bytes: 16 << 20,
        }
    }

    /// How many operations a system does at `size`: enough bytes or enough samples,
    /// bounded, scaled.
    fn samples(&self, size: u64, kind: Kind) -> u64 {
        let (budget, min, max) = match kind {
            Kind::Memory => (256u64 << 20, 4, 1000),
            Kind::S3 => (16 << 20, 2, 20),
            Kind::Disk => (64 << 20, 2, 100),
        };
        let n = (budget / size.max(1)).clamp(min, max);
        ((n as f64 * self.scale).round() as u64).max(1)
    }
}

/// How expensive a system's operations are, for sample counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// fdw and quinn: memory and loopback speed.
    Memory,
    /// The emulated object store: 100 ms and more per request.
    S3,
    /// A local disk with fsync.
    Disk,
}

/// The emulation in words, for reports.
pub fn describe(emulation: &CloudEmulation) -> String {
    if emulation.is_none() {
        return "none (the S3 server as fast as this machine)".to_owned();
    }
    format!(
        "first byte {:?} + up to {:?} jitter, {} per connection, {:.1}% SlowDown, seed {}",
        emulation.first_byte_latency,
        emulation.jitter,
        emulation
            .connection_bytes_per_sec
            .map_or("no cap".to_owned(), |b| format!(
                "{}/s",
                bytesize::ByteSize(b)
            )),
        emulation.error_rate * 100.0,
        emulation.seed
    )
}

/// Wall time, the thing measured.
fn now() -> std::time::Instant {
    #[allow(clippy::disallowed_methods)] // benchmark wall time is the measurement
    std::time::Instant::now()
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-9)
}
