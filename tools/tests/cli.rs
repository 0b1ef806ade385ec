//! The `fdw` CLI as a user runs it, against a cluster of three workers.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::Path;

use common::{run, write_config};

use fdw_engine::{HugePagePolicy, LocalCluster, PoolConfig};

fn fdw(config: &Path, args: &[&str]) -> (bool, String, String) {
    let config = config.to_str().unwrap();
    let args: Vec<&str> = ["--config", config]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    run(env!("CARGO_BIN_EXE_fdw"), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_ls_rm_and_status() {
    let pool = PoolConfig {
        size_bytes: 32 << 20,
        chunk_size_bytes: 64 << 10,
        huge_pages: HugePagePolicy::Off,
        populate: false,
        lock: false,
    };
    let cluster = LocalCluster::start(3, pool, |_| {}).await.unwrap();
    let dir = std::env::temp_dir().join(format!("fdw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    cluster.save_client_certs(&dir, "client").unwrap();
    let config = write_config(&dir, &cluster);
    let input = dir.join("input.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&input, &data).unwrap();

    let cli = config.clone();
    let input_arg = input.display().to_string();
    let output = dir.join("output.bin");
    let output_arg = output.display().to_string();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = fdw(&cli, &["put", "stage-1", "dir/part-0", &input_arg]);
        assert!(
            ok && out.contains("stored stage-1/dir/part-0"),
            "{out}{err}"
        );
        assert!(fdw(&cli, &["put", "stage-1", "dir/part-1", &input_arg]).0);

        let (ok, _, err) = fdw(&cli, &["get", "stage-1", "dir/part-0", "-o", &output_arg]);
        assert!(ok, "{err}");

        let (ok, out, _) = fdw(&cli, &["head", "stage-1", "dir/part-0"]);
        assert!(
            ok && out.contains("200000 bytes")
                && out.contains("ASYNC_THROUGH")
                && out.contains("persisted   no"),
            "{out}"
        );

        let (ok, out, _) = fdw(&cli, &["ls", "stage-1", "dir/"]);
        assert!(
            ok && out.contains("dir/part-0") && out.contains("dir/part-1"),
            "{out}"
        );

        let (ok, out, _) = fdw(&cli, &["rm", "stage-1", "dir/part-1"]);
        assert!(ok && out.contains("deleted stage-1/dir/part-1"), "{out}");
        let (_, out, _) = fdw(&cli, &["ls", "stage-1"]);
        assert!(!out.contains("dir/part-1"), "{out}");

        let (ok, _, err) = fdw(&cli, &["get", "stage-1", "dir/part-1"]);
        assert!(!ok && err.contains("NotFound"), "{err}");

        let (ok, out, _) = fdw(&cli, &["status"]);
        assert_eq!(out.matches(" up ").count(), 3, "{out}");
        assert!(
            ok && out.contains("unpersisted") && out.contains("uploads"),
            "{out}"
        );
    })
    .await
    .unwrap();
    assert_eq!(std::fs::read(&output).unwrap(), data);
    cluster.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
