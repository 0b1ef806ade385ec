//! Real `fdw-engine` processes from config files: certificates made by `fdw-engine
//! certs`, a three-node cluster, the SDK against it, a bad config, SIGTERM, and a
//! process stopped with SIGSTOP and resumed.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::process::Command;

use common::processes::{self, Processes, scratch};
use common::{keys_placed, wait_seen};
use fdw_client::{Replication, WriteType};
use fdw_net::placement::Placement;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_processes_serves_and_stops_cleanly() {
    let cluster = Processes::start("daemon", 3, "32MiB", "", &[]);
    let client = cluster.client().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let receipt = client
        .put("stage-1", "from-a-process", &data)
        .await
        .unwrap();
    assert_eq!(receipt.replicas.len(), 2);
    assert_eq!(client.get("stage-1", "from-a-process").await.unwrap(), data);

    // SIGTERM: each node drains and exits 0, saying so.
    cluster.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_process_is_declared_dead_until_it_answers_again() {
    let cluster = Processes::start("sigstop", 3, "32MiB", "", &[]);
    let client = cluster.client().await;
    let placement = Placement::new(client.members().to_vec());
    cluster.signal(1, Signal::SIGSTOP);
    // Its process lives, its connections stay open, but it answers nothing: dead.
    wait_seen(&client, &[0, 2], 1, false).await;

    // A write whose replica set includes it goes to the next member instead, and
    // reads back.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let r2 = Replication {
        write_type: WriteType::AsyncThrough,
        replicas: 2,
        quorum: 2,
    };
    let key = keys_placed(&placement, "stage-1", &[0, 1], 1).remove(0);
    let receipt = client.put_with("stage-1", &key, &data, r2).await.unwrap();
    assert_eq!(receipt.replicas.len(), 2);
    assert!(!receipt.replicas.contains(&1), "{:?}", receipt.replicas);
    assert_eq!(client.get("stage-1", &key).await.unwrap(), data);
    // All three cannot be had, and the error says why.
    let elsewhere = keys_placed(&placement, "stage-1", &[2, 1], 1).remove(0);
    let r3 = Replication {
        replicas: 3,
        quorum: 3,
        ..r2
    };
    let err = client
        .put_with("stage-1", &elsewhere, &data, r3)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("declared dead"), "{err}");

    // Resumed, it answers again: alive, and a full replica set is possible again.
    cluster.signal(1, Signal::SIGCONT);
    wait_seen(&client, &[0, 2], 1, true).await;
    let receipt = client
        .put_with("stage-1", &elsewhere, &data, r3)
        .await
        .unwrap();
    assert_eq!(receipt.replicas.len(), 3);
    cluster.stop_all();
}

#[test]
fn a_bad_config_fails_at_start_naming_the_setting() {
    let dir = scratch("badconfig");
    let path = dir.join("node.toml");
    std::fs::write(&path, "[node]\nid = 0\ncerts = \"/nowhere\"\n\n[memory]\npool_sise = \"1GiB\"\n\n[[members]]\nid = 0\nname = \"node-0\"\naddr = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(processes::ENGINE)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pool_sise") && stderr.contains("node.toml"),
        "{stderr}"
    );

    std::fs::write(&path, "[node]\nid = 0\ncerts = \"/nowhere\"\n\n[[members]]\nid = 0\nname = \"node-0\"\naddr = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(processes::ENGINE)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("fdw-engine certs"),
        "missing certificates are explained: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
