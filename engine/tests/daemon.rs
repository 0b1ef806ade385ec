//! Real `fdw-engine` processes from config files: certificates made by `fdw-engine
//! certs`, a three-node cluster, the SDK against it, a bad config, SIGTERM, and a
//! process stopped with SIGSTOP and resumed.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{keys_placed, wait_seen};
use fdw_client::{Client, ClientConfig, Member, NodeIdentity, Replication, WriteType};
use fdw_net::placement::Placement;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ENGINE: &str = env!("CARGO_BIN_EXE_fdw-engine");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fdw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Free UDP ports on loopback (released before the nodes bind them).
fn free_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

fn write_config(dir: &Path, id: u16, ports: &[u16]) -> PathBuf {
    let mut text = format!(
        "[node]\nid = {id}\ncerts = \"{}\"\n\n[memory]\npool_size = \"32MiB\"\nhuge_pages = \"off\"\n\n[limits]\nshutdown_grace = \"2s\"\nheartbeat_interval = \"100ms\"\nfailure_timeout = \"600ms\"\n",
        dir.display()
    );
    for (m, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "\n[[members]]\nid = {m}\nname = \"node-{m}\"\naddr = \"127.0.0.1:{port}\"\n"
        ));
    }
    let path = dir.join(format!("node-{id}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &Path) -> Child {
    Command::new(ENGINE)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn connect(dir: &Path, ports: &[u16]) -> Client {
    let members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(id, port)| Member {
            id: id as u16,
            name: format!("node-{id}"),
            addr: ([127, 0, 0, 1], *port).into(),
        })
        .collect();
    let identity = NodeIdentity::load(dir, "client").unwrap();
    let mut config = ClientConfig::new(members);
    // A stopped process costs each status call this long.
    config.request_timeout = Duration::from_secs(2);
    // The daemons need a moment to map their pools and bind; retry, bounded.
    for _ in 0..100 {
        if let Ok(client) = Client::connect(config.clone(), &identity).await
            && client.status().await.iter().all(|(_, s)| s.is_ok())
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the cluster did not come up");
}

fn make_certs(dir: &Path) {
    let certs = Command::new(ENGINE)
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--names", "node-0,node-1,node-2,client"])
        .output()
        .unwrap();
    assert!(
        certs.status.success(),
        "{}",
        String::from_utf8_lossy(&certs.stderr)
    );
}

/// SIGTERM to every node, then each must exit 0 having said it stopped.
fn stop_all(children: Vec<Child>) {
    for child in &children {
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("serving at") && stdout.contains("stopped"),
            "{stdout}"
        );
    }
}

/// Three `fdw-engine` processes with certificates and configs under a scratch
/// directory `name`, and a client once they all answer.
async fn start_cluster(name: &str) -> (PathBuf, Vec<Child>, Client) {
    let dir = scratch(name);
    make_certs(&dir);
    let ports = free_ports(3);
    let children: Vec<Child> = (0..3)
        .map(|id| spawn(&write_config(&dir, id, &ports)))
        .collect();
    let client = connect(&dir, &ports).await;
    (dir, children, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_processes_serves_and_stops_cleanly() {
    let (dir, children, client) = start_cluster("daemon").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let receipt = client
        .put("stage-1", "from-a-process", &data)
        .await
        .unwrap();
    assert_eq!(receipt.replicas.len(), 2);
    assert_eq!(client.get("stage-1", "from-a-process").await.unwrap(), data);

    // SIGTERM: each node drains and exits 0, saying so.
    stop_all(children);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A key whose preference list is `first`, `second`, then the third member.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_process_is_declared_dead_until_it_answers_again() {
    let (dir, children, client) = start_cluster("sigstop").await;
    let placement = Placement::new(client.members().to_vec());
    let stopped = Pid::from_raw(children[1].id() as i32);
    kill(stopped, Signal::SIGSTOP).unwrap();
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
    let r3 = Replication {
        replicas: 3,
        quorum: 3,
        ..r2
    };
    let err = client
        .put_with(
            "stage-1",
            &keys_placed(&placement, "stage-1", &[2, 1], 1).remove(0),
            &data,
            r3,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("declared dead"), "{err}");

    // Resumed, it answers again: alive, and a full replica set is possible again.
    kill(stopped, Signal::SIGCONT).unwrap();
    wait_seen(&client, &[0, 2], 1, true).await;
    let receipt = client
        .put_with(
            "stage-1",
            &keys_placed(&placement, "stage-1", &[2, 1], 1).remove(0),
            &data,
            r3,
        )
        .await
        .unwrap();
    assert_eq!(receipt.replicas.len(), 3);
    stop_all(children);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_config_fails_at_start_naming_the_setting() {
    let dir = scratch("badconfig");
    let path = dir.join("node.toml");
    std::fs::write(&path, "[node]\nid = 0\ncerts = \"/nowhere\"\n\n[memory]\npool_sise = \"1GiB\"\n\n[[members]]\nid = 0\nname = \"node-0\"\naddr = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(ENGINE)
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
    let out = Command::new(ENGINE)
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
