//! `fdw-bench` as a user runs it: a small standard run against a local cluster, its
//! report, its plot, and `compare` of two reports.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::Path;

use common::{run, write_config};
use fdw_engine::{HugePagePolicy, LocalCluster, PoolConfig};
use fdw_tools::bench::Report;

fn fdw_bench(args: &[&str]) -> (bool, String, String) {
    run(env!("CARGO_BIN_EXE_fdw-bench"), args)
}

fn load(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_small_run_reports_every_workload_beside_its_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, stdout, stderr) = fdw_bench(&[
        "all",
        "--scale",
        "0.02",
        "--sizes",
        "4KiB,256KiB",
        "--replication",
        "1/1,2/2,3/3,4/2",
        "--concurrency",
        "1,3",
        "--drain-bytes",
        "64MiB",
        "--pool-size",
        "192MiB",
        "--s3-latency",
        "2ms",
        "--s3-jitter",
        "2ms",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stderr.contains("R=4 W=2 skipped on 3 workers"), "{stderr}");
    let report = load(&out);
    assert_eq!(report.seed, 7);
    assert!(report.command.contains("--scale 0.02"));
    assert!(report.machine.cores >= 1 && report.machine.memory_bytes > 0);
    assert!(report.settings.emulation.contains("first byte 2ms"));

    let find = |workload: &str, system: &str, bytes: u64, c: u32| {
        report
            .series
            .iter()
            .find(|s| s.key() == (workload.into(), system.into(), bytes, c))
            .unwrap_or_else(|| {
                panic!(
                    "no {workload} {system} {bytes} ×{c} in {:#?}",
                    report.series
                )
            })
    };
    for bytes in [4096, 256 << 10] {
        for system in [
            "fdw R=1 W=1",
            "fdw R=2 W=2",
            "fdw R=3 W=3",
            "quinn",
            "aws-sdk-s3",
            "file+fsync",
        ] {
            let s = find("put", system, bytes, 1);
            let l = s.latency.as_ref().unwrap();
            assert!(s.samples >= 1 && s.mib_per_s > 0.0, "{s:?}");
            assert!(l.p50 <= l.p99 && l.p99 <= l.max && l.p50 > 0.0, "{s:?}");
            assert_eq!(s.baseline, !system.starts_with("fdw"));
        }
        for system in ["fdw (R=2)", "quinn", "aws-sdk-s3"] {
            assert!(find("get", system, bytes, 1).samples >= 1);
        }
    }
    for c in [1, 3] {
        for system in ["fdw R=2 W=2", "quinn", "aws-sdk-s3"] {
            let s = find("put-throughput", system, 1 << 20, c);
            assert!(s.samples >= u64::from(c) && s.mib_per_s > 0.0, "{s:?}");
        }
    }
    for system in ["fdw persist pipeline", "aws-sdk-s3"] {
        assert!(find("drain", system, 64 << 20, 8).mib_per_s > 0.0);
    }
    // The table shows every fdw figure as a ratio to each baseline.
    assert!(
        stdout.contains("vs quinn") && stdout.contains("vs aws-sdk-s3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("vs file+fsync") && stdout.contains("% MiB/s"),
        "{stdout}"
    );

    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let lines = report
        .series
        .iter()
        .filter(|s| s.workload == "put" || s.workload == "get")
        .count();
    assert_eq!(
        svg.matches("<path").count(),
        lines,
        "one line per latency series"
    );

    // Comparing a report with itself: every series matched, every ratio 1.
    let json = out.join("report.json");
    let json = json.to_str().unwrap();
    let (ok, stdout, stderr) = fdw_bench(&["compare", json, json]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("{} series in both runs", report.series.len())),
        "{stdout}"
    );
    assert!(stdout.contains("1.00"), "{stdout}");
}

#[test]
fn bad_arguments_are_refused_with_a_clear_error() {
    for (args, says) in [
        (&["put", "--replication", "2"][..], "is not R/W"),
        (&["put", "--s3-error-rate", "2"][..], "between 0 and 1"),
        (&["put", "--sizes", "lots"][..], "--sizes"),
        (
            &["compare", "/nonexistent/a.json", "/nonexistent/b.json"][..],
            "reading",
        ),
    ] {
        let (ok, _, stderr) = fdw_bench(args);
        assert!(!ok && stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cluster_is_measured_from_its_config() {
    let pool = PoolConfig {
        size_bytes: 64 << 20,
        chunk_size_bytes: 64 << 10,
        huge_pages: HugePagePolicy::Off,
        populate: false,
        lock: false,
    };
    let cluster = LocalCluster::start(3, pool, |_| {}).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    cluster.save_client_certs(dir.path(), "client").unwrap();
    let config = write_config(dir.path(), &cluster);
    let out = dir.path().join("run");
    let args = [
        "put".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--sizes".to_owned(),
        "4KiB".to_owned(),
        "--replication".to_owned(),
        "2/2".to_owned(),
        "--scale".to_owned(),
        "0.02".to_owned(),
        "--no-emulation".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fdw_bench(&args)
    })
    .await
    .unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    let report = load(&out);
    assert!(
        report.settings.target.starts_with("running cluster"),
        "{:?}",
        report.settings
    );
    let fdw = report
        .series
        .iter()
        .find(|s| s.system == "fdw R=2 W=2")
        .expect("fdw measured");
    assert!(fdw.samples >= 1 && fdw.latency.is_some());
    // The puts went to that cluster.
    let client = cluster.client("check").await.unwrap();
    assert!(client.head("bench", "put/4096/r2w2").await.is_ok());
    cluster.shutdown().await;
}
