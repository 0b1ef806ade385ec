//! fdw's command-line tools.
//!
//! `fdw` (put, get, head, ls, rm, cluster status) arrives with the write path and
//! `fdw-bench` (latency histograms against baselines) with the benchmark work; both are
//! thin shells over `fdw-client` and `fdw-engine`. Until then the local demo is
//! `fdw-engine` itself, run with no arguments.
