//! fdw's command-line tools.
//!
//! - `fdw` (`src/bin/fdw.rs`): put, get, head, ls, rm and cluster status, reading the
//!   cluster's TOML file for members and certificates.
//! - `fdw-bench` (`src/bin/fdw-bench.rs`, [`bench`]): latency histograms and throughput
//!   of the whole system, beside its baselines measured in the same run.
//! - `test.sh`: every test of the workspace, with its set-up.

pub mod bench;
pub mod cluster;
