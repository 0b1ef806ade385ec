//! fdw's command-line tools.
//!
//! - `fdw` (`src/bin/fdw.rs`): put, get, head, ls, rm and cluster status, reading the
//!   cluster's TOML file for members and certificates.
//! - `fdw-bench` (latency histograms against baselines) arrives with the benchmark work.
//! - `test.sh`: every test of the workspace, with its set-up.
