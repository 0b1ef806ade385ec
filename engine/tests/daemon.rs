//! Real `fdw-engine` processes from config files: certificates made by `fdw-engine
//! certs`, a three-node cluster, the SDK against it, a bad config, and SIGTERM.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fdw_client::{Client, ClientConfig, Member, NodeIdentity};
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
        "[node]\nid = {id}\ncerts = \"{}\"\n\n[memory]\npool_size = \"32MiB\"\nhuge_pages = \"off\"\n\n[limits]\nshutdown_grace = \"2s\"\n",
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
    // The daemons need a moment to map their pools and bind; retry, bounded.
    for _ in 0..100 {
        if let Ok(client) = Client::connect(ClientConfig::new(members.clone()), &identity).await
            && client.status().await.iter().all(|(_, s)| s.is_ok())
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the cluster did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_processes_serves_and_stops_cleanly() {
    let dir = scratch("daemon");
    let certs = Command::new(ENGINE)
        .args(["certs", "--out"])
        .arg(&dir)
        .args(["--names", "node-0,node-1,node-2,client"])
        .output()
        .unwrap();
    assert!(
        certs.status.success(),
        "{}",
        String::from_utf8_lossy(&certs.stderr)
    );

    let ports = free_ports(3);
    let mut children: Vec<Child> = (0..3)
        .map(|id| spawn(&write_config(&dir, id, &ports)))
        .collect();
    let client = connect(&dir, &ports).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let receipt = client
        .put("stage-1", "from-a-process", &data)
        .await
        .unwrap();
    assert_eq!(receipt.replicas.len(), 2);
    assert_eq!(client.get("stage-1", "from-a-process").await.unwrap(), data);

    // SIGTERM: each node drains and exits 0, saying so.
    for child in &children {
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    }
    for child in children.drain(..) {
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
