//! A cluster of real `fdw-engine` processes: certificates made by `fdw-engine certs`,
//! one config file per node, each process's output in a log file beside it (a pipe
//! nobody reads would block a chatty node), and signals for the failure tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fdw_client::{Client, ClientConfig, Member, NodeIdentity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const ENGINE: &str = env!("CARGO_BIN_EXE_fdw-engine");

/// An empty scratch directory for test `name`.
pub fn scratch(name: &str) -> PathBuf {
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

fn make_certs(dir: &Path, nodes: usize) {
    let names: Vec<String> = (0..nodes)
        .map(|id| format!("node-{id}"))
        .chain(["client".to_owned()])
        .collect();
    let certs = Command::new(ENGINE)
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--names", &names.join(",")])
        .output()
        .unwrap();
    assert!(
        certs.status.success(),
        "{}",
        String::from_utf8_lossy(&certs.stderr)
    );
}

/// The config every test cluster shares: small plain-page pools, quick failure
/// detection; `extra` is appended (more sections).
fn write_config(dir: &Path, id: u16, ports: &[u16], pool: &str, extra: &str) -> PathBuf {
    let mut text = format!(
        "[node]\nid = {id}\ncerts = \"{}\"\n\n[memory]\npool_size = \"{pool}\"\nhuge_pages = \"off\"\n\n[limits]\nshutdown_grace = \"2s\"\nheartbeat_interval = \"100ms\"\nfailure_timeout = \"600ms\"\n\n{extra}\n",
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

/// Three (or more) `fdw-engine` processes.
pub struct Processes {
    pub dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    env: Vec<(String, String)>,
    /// Starts so far per node, to name each start's log file.
    starts: Vec<u32>,
}

impl Processes {
    /// Starts `nodes` processes with pools of `pool` (e.g. `"32MiB"`), `extra` config
    /// sections and `env` variables, under a scratch directory `name`.
    pub fn start(name: &str, nodes: usize, pool: &str, extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = scratch(name);
        make_certs(&dir, nodes);
        let ports = free_ports(nodes);
        for id in 0..nodes as u16 {
            write_config(&dir, id, &ports, pool, extra);
        }
        let mut processes = Self {
            dir,
            ports,
            children: (0..nodes).map(|_| None).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts: vec![0; nodes],
        };
        for id in 0..nodes as u16 {
            processes.spawn(id);
        }
        processes
    }

    fn log_path(&self, id: u16, start: u32) -> PathBuf {
        self.dir.join(format!("node-{id}.{start}.log"))
    }

    /// Starts node `id` (again).
    pub fn spawn(&mut self, id: u16) {
        let i = usize::from(id);
        assert!(self.children[i].is_none(), "node {id} is running");
        self.starts[i] += 1;
        let log = std::fs::File::create(self.log_path(id, self.starts[i])).unwrap();
        let child = Command::new(ENGINE)
            .arg("--config")
            .arg(self.dir.join(format!("node-{id}.toml")))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    fn pid(&self, id: u16) -> Pid {
        let child = self.children[usize::from(id)].as_ref().unwrap();
        Pid::from_raw(child.id() as i32)
    }

    /// Sends node `id` a signal (SIGSTOP, SIGCONT, …).
    pub fn signal(&self, id: u16, signal: Signal) {
        kill(self.pid(id), signal).unwrap();
    }

    /// SIGKILL: the process dies at once, and its memory with it.
    pub fn kill(&mut self, id: u16) {
        self.signal(id, Signal::SIGKILL);
        let mut child = self.children[usize::from(id)].take().unwrap();
        child.wait().unwrap();
    }

    /// A client of the cluster, once every node answers.
    pub async fn client(&self) -> Client {
        let members: Vec<Member> = self
            .ports
            .iter()
            .enumerate()
            .map(|(id, port)| Member {
                id: id as u16,
                name: format!("node-{id}"),
                addr: ([127, 0, 0, 1], *port).into(),
            })
            .collect();
        let identity = NodeIdentity::load(&self.dir, "client").unwrap();
        let mut config = ClientConfig::new(members);
        // A stopped process costs each call this long.
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

    /// SIGTERM to every node; each must exit 0 having said it stopped. Removes the
    /// scratch directory.
    pub fn stop_all(mut self) {
        let running: Vec<u16> = (0..self.children.len() as u16)
            .filter(|&id| self.children[usize::from(id)].is_some())
            .collect();
        for &id in &running {
            self.signal(id, Signal::SIGTERM);
        }
        for id in running {
            let status = self.children[usize::from(id)]
                .take()
                .unwrap()
                .wait()
                .unwrap();
            let log =
                std::fs::read_to_string(self.log_path(id, self.starts[usize::from(id)])).unwrap();
            assert!(status.success(), "node {id}: {status}\n{log}");
            assert!(
                log.contains("serving at") && log.contains("stopped"),
                "node {id}: {log}"
            );
        }
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

impl Drop for Processes {
    /// A failed test leaves no process behind.
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
