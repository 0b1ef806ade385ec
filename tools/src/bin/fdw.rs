//! `fdw`: put, get, head, ls, rm and cluster status against an fdw cluster.
//!
//! It reads the cluster's TOML file (the one the nodes use) for the member list and the
//! certificate directory, and presents the client certificate `--identity` from it.

use std::path::PathBuf;

use anyhow::Context;
use bytesize::ByteSize;
use clap::{Parser, Subcommand};
use tokio::io::AsyncWriteExt;

/// Command-line client of an fdw cluster.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The cluster's TOML file.
    #[arg(long, env = "FDW_CONFIG", value_name = "PATH")]
    config: PathBuf,
    /// Name of the client certificate in the certs directory.
    #[arg(long, default_value = "client")]
    identity: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store a file (or standard input, `-`) as bucket/key.
    Put {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// File to read; `-` for standard input.
        file: PathBuf,
    },
    /// Write bucket/key to a file (or standard output).
    Get {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Output file; standard output if absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Describe bucket/key.
    Head {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// List keys of a bucket under a prefix.
    Ls {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Delete bucket/key.
    Rm {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// Members, liveness, pool use and unpersisted bytes.
    Status,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = fdw_tools::cluster::connect(&args.config, &args.identity).await?;
    match args.command {
        Command::Put { bucket, key, file } => {
            let data = if file.as_os_str() == "-" {
                let mut data = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut data).await?;
                data
            } else {
                tokio::fs::read(&file)
                    .await
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let receipt = client.put(&bucket, &key, &data).await?;
            println!(
                "stored {bucket}/{key} {} ({}), crc32 {:08x}, on nodes {:?}",
                receipt.version,
                ByteSize(data.len() as u64),
                receipt.crc,
                receipt.replicas
            );
        }
        Command::Get {
            bucket,
            key,
            output,
        } => {
            let data = client.get(&bucket, &key).await?;
            match output {
                Some(path) => tokio::fs::write(&path, &data)
                    .await
                    .with_context(|| format!("writing {}", path.display()))?,
                None => tokio::io::stdout().write_all(&data).await?,
            }
        }
        Command::Head { bucket, key } => {
            let info = client.head(&bucket, &key).await?;
            println!("{bucket}/{key}");
            println!("  version     {}", info.version);
            println!("  size        {} ({} bytes)", ByteSize(info.len), info.len);
            println!("  crc32       {:08x}", info.crc);
            println!("  write type  {}", info.write_type);
            println!(
                "  persisted   {}",
                if info.persisted { "yes" } else { "no" }
            );
            println!("  on node     {:?}", info.replicas);
        }
        Command::Ls { bucket, prefix } => {
            let mut start_after = None;
            loop {
                let page = client
                    .list(&bucket, &prefix, start_after.as_deref(), 1000)
                    .await?;
                for entry in &page.entries {
                    println!(
                        "{:>12}  {:<22} {}",
                        entry.len,
                        entry.version.to_string(),
                        entry.key
                    );
                }
                match page.next_start_after {
                    Some(next) => start_after = Some(next),
                    None => break,
                }
            }
        }
        Command::Rm { bucket, key } => {
            let version = client.delete(&bucket, &key).await?;
            println!("deleted {bucket}/{key} as of {version}");
        }
        Command::Status => {
            println!(
                "{:<10} {:<22} {:<6} {:>10} {:>12} {:>10} {:>8} {:>10} {:>8} {:>8} {:>8}",
                "member",
                "address",
                "state",
                "pool",
                "unpersisted",
                "evictable",
                "backlog",
                "bytes",
                "oldest",
                "uploads",
                "failed"
            );
            let mut failures = Vec::new();
            let mut views = Vec::new();
            for (member, status) in client.status().await {
                match status {
                    Ok(s) => {
                        println!(
                            "{:<10} {:<22} {:<6} {:>10} {:>12} {:>10} {:>8} {:>10} {:>8} {:>8} {:>8}",
                            member.name,
                            member.addr.to_string(),
                            "up",
                            ByteSize(s.pool_bytes).to_string(),
                            ByteSize(s.pinned_bytes).to_string(),
                            ByteSize(s.evictable_bytes).to_string(),
                            s.backlog_objects,
                            ByteSize(s.backlog_bytes).to_string(),
                            format!("{:.1}s", s.backlog_oldest_ms as f64 / 1e3),
                            format!("{}+{}", s.uploads_done, s.uploads_in_flight),
                            s.upload_failures,
                        );
                        if let Some(failure) = s.last_upload_failure {
                            failures.push(format!("{}: {failure}", member.name));
                        }
                        for peer in s.members.iter().filter(|p| !p.alive) {
                            views.push(format!(
                                "{} sees node {} dead for {:.1}s (no heartbeat answered)",
                                member.name,
                                peer.id,
                                peer.since_ms as f64 / 1e3
                            ));
                        }
                        let r = s.recovery;
                        if r.lost_objects > 0 {
                            views.push(format!(
                                "{} witnessed {} acknowledged versions LOST: every member \
                                 holding them failed before they were persisted (named in \
                                 its log, and by `fdw head`)",
                                member.name, r.lost_objects
                            ));
                        }
                        if r.losses_seen > 0 {
                            let state = if r.losses_restored == r.losses_seen {
                                "recovered".to_owned()
                            } else {
                                format!(
                                    "recovering ({} objects under-replicated)",
                                    r.under_replicated
                                )
                            };
                            views.push(format!(
                                "{}: {} member losses seen, {state}; took over {} objects, \
                                 made {} copies ({})",
                                member.name,
                                r.losses_seen,
                                r.taken_over,
                                r.copies_made,
                                ByteSize(r.copy_bytes)
                            ));
                        }
                    }
                    Err(err) => println!(
                        "{:<10} {:<22} {:<6} {}",
                        member.name,
                        member.addr.to_string(),
                        "down",
                        err
                    ),
                }
            }
            for view in views {
                println!("{view}");
            }
            for failure in failures {
                println!("last upload failure on {failure}");
            }
        }
    }
    Ok(())
}
