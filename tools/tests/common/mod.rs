//! Helpers shared by the tools' tests: running a binary, and a cluster's TOML file.

use std::path::{Path, PathBuf};
use std::process::Command;

use fdw_engine::LocalCluster;

/// Runs `binary` with `args`: whether it succeeded, its stdout and its stderr.
pub fn run(binary: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `cluster`'s members and `dir` (its certificates) as a cluster TOML file.
pub fn write_config(dir: &Path, cluster: &LocalCluster) -> PathBuf {
    let mut text = format!("[node]\nid = 0\ncerts = \"{}\"\n", dir.display());
    for m in cluster.members() {
        text.push_str(&format!(
            "\n[[members]]\nid = {}\nname = \"{}\"\naddr = \"{}\"\n",
            m.id, m.name, m.addr
        ));
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}
