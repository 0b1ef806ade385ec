//! What a run measured, as it is saved (JSON) and compared: every series with its
//! percentiles, and everything needed to reproduce the run.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::machine::Machine;

/// One run of `fdw-bench`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    /// fdw's version.
    pub version: String,
    /// Seed of the data and of the emulation's draws.
    pub seed: u64,
    /// Where it ran.
    pub machine: Machine,
    /// What it ran against.
    pub settings: Settings,
    /// Everything measured.
    pub series: Vec<Series>,
}

/// The cluster and under-store a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `local cluster of N workers` or the config file of a running cluster.
    pub target: String,
    /// Memory pool per worker (local cluster).
    pub pool_bytes: u64,
    /// Chunk and frame size.
    pub chunk_bytes: u64,
    /// Write type of fdw's puts.
    pub write_type: String,
    /// The S3 server's emulation, as words.
    pub emulation: String,
}

/// One system under one workload at one object size and concurrency.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Series {
    /// `put`, `get`, `put-throughput` or `drain`.
    pub workload: String,
    /// `fdw R=2 W=2`, or a baseline: `quinn`, `aws-sdk-s3`, `file+fsync`.
    pub system: String,
    /// Whether this is a baseline fdw is compared with.
    pub baseline: bool,
    /// Object size.
    pub object_bytes: u64,
    /// Operations in flight at once.
    pub concurrency: u32,
    /// Operations measured.
    pub samples: u64,
    /// Latency per operation, if measured one by one.
    pub latency: Option<Latency>,
    /// Bytes moved per second over the series' wall time.
    pub mib_per_s: f64,
}

impl Series {
    /// What identifies the series across runs.
    pub fn key(&self) -> (String, String, u64, u32) {
        (
            self.workload.clone(),
            self.system.clone(),
            self.object_bytes,
            self.concurrency,
        )
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// (percentile, µs) along the whole distribution, for plots.
    pub curve: Vec<(f64, f64)>,
}

/// Where along the distribution the plot's curve is sampled.
const CURVE: [f64; 14] = [
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

impl Latency {
    /// From a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        Self {
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: h.max() as f64 / 1e3,
            mean: h.mean() / 1e3,
            curve: CURVE.iter().map(|&q| (q * 100.0, us(q))).collect(),
        }
    }
}
