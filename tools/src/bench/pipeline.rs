//! The seed experiment: a four-stage pipeline in two frameworks, handing its data from
//! stage to stage through the S3 API, run directly against S3 and through fdw's gateway.
//!
//! Stages (`python/pipeline/stage.py`, one process each): (1) pyarrow generates random
//! CSV files, (2) pyarrow converts them to Parquet, (3) polars transforms column values,
//! (4) polars aggregates. The modes run on the same data, in turn, so the machine's
//! noise falls on all of them:
//! - **direct**: every stage reads and writes the in-process S3 server behind the cloud
//!   emulation;
//! - **fdw**: every stage reads and writes a local fdw cluster's S3 gateway (R=2 W=2,
//!   `ASYNC_THROUGH`), whose under-store is that same emulated S3. After each fdw run,
//!   the time until every output is persisted there is measured separately;
//! - **memory**: every stage reads and writes files in a tmpfs, through its framework's
//!   local filesystem: no S3, no network, no server. This is the pipeline's compute on
//!   this machine, the floor fdw is measured against.
//!
//! A stage's time is its own work, from after its imports to its last byte written.
//! The aggregation of every run, in both modes, must be identical: the run fails if not.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fdw_client::{Client, ClientConfig, Replication, WriteType};
use fdw_engine::gateway::{AccessKey, Gateway, GatewayConfig};
use fdw_engine::{LocalCluster, PoolConfig};
use fdw_net::BucketName;
use fdw_persist::emulation::CloudEmulation;
use fdw_persist::s3_server::{self, S3Server};
use serde::{Deserialize, Serialize};

use super::describe;

/// What each stage does, in order.
pub const STAGES: [&str; 4] = [
    "1 generate CSV (pyarrow)",
    "2 CSV to Parquet (pyarrow)",
    "3 transform (polars)",
    "4 aggregate (polars)",
];
/// Straight to the emulated S3: the baseline.
pub const DIRECT: &str = "direct S3";
/// Through fdw's gateway.
pub const FDW: &str = "fdw";
/// Files in a tmpfs: the stages' compute alone, the floor.
pub const MEMORY: &str = "memory, no S3";

/// Where a run's stages read and write; `--modes` names them in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Straight to the emulated S3.
    Direct,
    /// Through fdw's gateway.
    Fdw,
    /// Files in a tmpfs, no S3: the floor.
    Memory,
}

impl Mode {
    /// Every mode, in the order they run.
    pub const ALL: [Mode; 3] = [Mode::Direct, Mode::Fdw, Mode::Memory];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => DIRECT,
            Mode::Fdw => FDW,
            Mode::Memory => MEMORY,
        }
    }
}
/// The bucket every stage uses, in both modes.
const BUCKET: &str = "lake";
/// Bytes of one generated CSV row, on average (measured: 8,568,835 bytes for 200,000).
const ROW_BYTES: u64 = 43;
/// The gateway's key in the fdw mode.
const GATEWAY_KEY: &str = "PIPELINE";
const GATEWAY_SECRET: &str = "pipeline-secret-key";

/// How to run the experiment.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    /// Size of the CSV stage 1 generates, all files together.
    pub csv_bytes: u64,
    /// Files per stage.
    pub files: u32,
    /// Runs per mode.
    pub runs: u32,
    /// Files each stage works on at once.
    pub threads: u32,
    /// Seed of the data.
    pub seed: u64,
    /// How S3 behaves.
    pub emulation: CloudEmulation,
    /// Workers of the fdw cluster.
    pub nodes: u16,
    /// Memory pool of each worker.
    pub pool_bytes: u64,
    /// The venv's Python, with pyarrow and polars.
    pub python: PathBuf,
    /// `python/pipeline/stage.py`.
    pub script: PathBuf,
    /// Which modes to run (always in [`Mode::ALL`]'s order).
    pub modes: Vec<Mode>,
}

/// One run of the four stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRun {
    /// Which mode ([`Mode::name`]).
    pub mode: String,
    /// Seconds of each stage.
    pub stages: Vec<f64>,
    /// Their sum.
    pub total: f64,
    /// For fdw: seconds from the end of stage 4 until the under-store had everything.
    pub persisted_after: Option<f64>,
}

/// Everything one `fdw-bench pipeline` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineReport {
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: String,
    /// The cloud emulation, in words.
    pub emulation: String,
    /// CSV bytes asked for.
    pub csv_bytes: u64,
    /// Files per stage.
    pub files: u32,
    /// Rows per file.
    pub rows_per_file: u64,
    /// Runs, in the order they ran.
    pub runs: Vec<PipelineRun>,
    /// Groups of the aggregation, identical in every run.
    pub result_groups: usize,
}

/// Mean, min and max of some seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let values: Vec<f64> = values.into_iter().collect();
        let n = values.len().max(1) as f64;
        Self {
            mean: values.iter().sum::<f64>() / n,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// (max − min) ÷ mean.
    pub fn relative_range(&self) -> f64 {
        (self.max - self.min) / self.mean.max(1e-12)
    }
}

impl PipelineReport {
    fn runs_of<'a>(&'a self, mode: &'a str) -> impl Iterator<Item = &'a PipelineRun> + 'a {
        self.runs.iter().filter(move |r| r.mode == mode)
    }

    /// Stage `stage`'s times in `mode`.
    pub fn stage(&self, mode: &str, stage: usize) -> Spread {
        Spread::of(self.runs_of(mode).map(|r| r.stages[stage]))
    }

    /// Whole-pipeline times in `mode`.
    pub fn total(&self, mode: &str) -> Spread {
        Spread::of(self.runs_of(mode).map(|r| r.total))
    }

    /// Seconds until fdw's outputs were all persisted.
    pub fn persisted_after(&self) -> Spread {
        Spread::of(self.runs.iter().filter_map(|r| r.persisted_after))
    }

    /// The names of the modes that ran, in [`Mode::ALL`]'s order.
    pub fn modes(&self) -> Vec<&'static str> {
        Mode::ALL
            .map(Mode::name)
            .into_iter()
            .filter(|m| self.runs_of(m).next().is_some())
            .collect()
    }

    /// The table `fdw-bench pipeline` prints: a column per mode that ran, and the ratios
    /// between them that its modes allow.
    pub fn table(&self) -> String {
        let cell = |s: Spread| format!("{:.2} s ({:.2}–{:.2})", s.mean, s.min, s.max);
        let modes = self.modes();
        let ran = |mode| modes.contains(&mode);
        // (heading, numerator, denominator) of each ratio column.
        let ratios: Vec<(&str, &str, &str)> =
            [("speedup", DIRECT, FDW), ("fdw ÷ memory", FDW, MEMORY)]
                .into_iter()
                .filter(|&(_, a, b)| ran(a) && ran(b))
                .collect();
        let mut out = format!(
            "seed pipeline: {} of CSV in {} files ({} rows each), {} runs per mode\n\
             S3 emulation: {}\nmachine: {}\n\n{:<28}",
            bytesize::ByteSize(self.csv_bytes),
            self.files,
            self.rows_per_file,
            modes.first().map_or(0, |m| self.runs_of(m).count()),
            self.emulation,
            self.machine,
            "stage",
        );
        for mode in &modes {
            out += &format!(" {:>30}", format!("{mode}: mean (min–max)"));
        }
        for (heading, _, _) in &ratios {
            out += &format!(" {heading:>13}");
        }
        out += "\n";
        // A row per stage (`Some(i)`), then the whole pipeline (`None`).
        let of = |row: Option<usize>, mode| {
            row.map_or_else(|| self.total(mode), |i| self.stage(mode, i))
        };
        for row in (0..STAGES.len()).map(Some).chain([None]) {
            out += &format!("{:<28}", row.map_or("whole pipeline", |i| STAGES[i]));
            for &mode in &modes {
                out += &format!(" {:>30}", cell(of(row, mode)));
            }
            for &(_, a, b) in &ratios {
                out += &format!(" {:>12.2}x", of(row, a).mean / of(row, b).mean.max(1e-12));
            }
            out += "\n";
        }
        out += "\n";
        if ran(FDW) {
            out += &format!(
                "fdw run-to-run spread (max − min) ÷ mean: {:.1} %\n\
                 fdw outputs all persisted in S3 after the run: {}\n",
                self.total(FDW).relative_range() * 100.0,
                cell(self.persisted_after()),
            );
        }
        if ran(DIRECT) && ran(MEMORY) {
            out += &format!(
                "the most any speedup can be here (direct ÷ memory): {:.1}x\n",
                self.total(DIRECT).mean / self.total(MEMORY).mean.max(1e-12),
            );
        }
        out += &format!(
            "aggregation: {} groups, identical in all {} runs\n",
            self.result_groups,
            self.runs.len(),
        );
        out
    }
}

/// Runs the experiment.
pub async fn run(plan: PipelinePlan, command: String) -> anyhow::Result<PipelineReport> {
    ensure!(
        plan.files > 0 && plan.runs > 0 && !plan.modes.is_empty(),
        "--files, --runs and --modes must not be 0 or empty"
    );
    ensure!(
        plan.script.is_file(),
        "{} not found: run from the repository's root",
        plan.script.display()
    );
    let rows_per_file = (plan.csv_bytes / u64::from(plan.files) / ROW_BYTES).max(1);
    let root = tempfile::tempdir().context("a directory for the S3 server")?;
    std::fs::create_dir(root.path().join(BUCKET))?;
    let s3 = S3Server::start_emulating(root.path(), plan.emulation.clone()).await?;
    let direct = Target::S3 {
        url: format!("http://{}", s3.addr()),
        access_key: s3_server::ACCESS_KEY.into(),
        secret_key: s3_server::SECRET_KEY.into(),
    };
    let memory = Target::Local(tmpfs_dir().context("a directory for the memory mode")?);

    let s3_config = s3.config();
    let cluster = LocalCluster::start(
        plan.nodes,
        PoolConfig {
            size_bytes: usize::try_from(plan.pool_bytes)?,
            ..PoolConfig::default()
        },
        |c| {
            c.persist.s3 = Some(s3_config.clone());
            if let (Ok(bucket), Ok(location)) =
                (BucketName::new(BUCKET), format!("s3://{BUCKET}").parse())
            {
                c.persist.buckets.insert(bucket, location);
            }
        },
    )
    .await
    .context("starting the fdw cluster")?;
    let replication = Replication::new(WriteType::AsyncThrough, 2, 2)?;
    let mut client_config = ClientConfig::new(cluster.members().to_vec());
    client_config.replication = replication;
    let identity = cluster.client_identity("pipeline")?;
    let gateway_client = Client::connect(client_config.clone(), &identity).await?;
    let status_client = Client::connect(client_config, &identity).await?;
    let mut gateway_config = GatewayConfig::new(
        ([127, 0, 0, 1], 0).into(),
        vec![AccessKey {
            access_key: GATEWAY_KEY.into(),
            secret_key: GATEWAY_SECRET.into(),
        }],
        replication,
    );
    // The bucket the cluster persists: it exists without a CreateBucket.
    gateway_config.buckets.insert(BUCKET.into(), replication);
    let gateway = Gateway::start(gateway_config, gateway_client).await?;
    let through_fdw = Target::S3 {
        url: format!("http://{}", gateway.addr()),
        access_key: GATEWAY_KEY.into(),
        secret_key: GATEWAY_SECRET.into(),
    };

    let mut runs = Vec::new();
    let mut result: Option<serde_json::Value> = None;
    for n in 0..plan.runs {
        for mode in Mode::ALL.into_iter().filter(|m| plan.modes.contains(m)) {
            let target = match mode {
                Mode::Direct => &direct,
                Mode::Fdw => &through_fdw,
                Mode::Memory => &memory,
            };
            let prefix = format!("{mode:?}/run-{n}").to_lowercase();
            let mode = mode.name();
            eprintln!("run {} of {}: {mode}", n + 1, plan.runs);
            let outputs = target.prepare(&prefix)?;
            let mut stages = Vec::new();
            for stage in 1..=4 {
                let done = run_stage(&plan, target, &prefix, rows_per_file, stage).await?;
                eprintln!("  {}: {:.2} s", STAGES[stage as usize - 1], done.seconds);
                stages.push(done.seconds);
                if let Some(got) = done.result {
                    match &result {
                        None => result = Some(got),
                        Some(first) if *first == got => {}
                        Some(first) => bail!(
                            "{mode} run {n}: the aggregation differs from the first run's:\n\
                             {got}\nfirst:\n{first}"
                        ),
                    }
                }
            }
            if let Some(outputs) = outputs {
                std::fs::remove_dir_all(&outputs)
                    .with_context(|| format!("removing {}", outputs.display()))?;
            }
            let persisted_after = if mode == FDW {
                let waited = wait_persisted(&status_client).await?;
                eprintln!("  persisted in S3 {:.2} s later", waited.as_secs_f64());
                Some(waited.as_secs_f64())
            } else {
                None
            };
            runs.push(PipelineRun {
                mode: mode.into(),
                total: stages.iter().sum(),
                stages,
                persisted_after,
            });
        }
    }
    let result_groups = result
        .as_ref()
        .and_then(|r| r.as_array().map(Vec::len))
        .unwrap_or(0);
    ensure!(result_groups > 0, "stage 4 returned no aggregation");
    drop(gateway);
    cluster.shutdown().await;
    Ok(PipelineReport {
        command,
        machine: format!("{:?}", super::machine::Machine::detect()),
        emulation: describe(&plan.emulation),
        csv_bytes: plan.csv_bytes,
        files: plan.files,
        rows_per_file,
        runs,
        result_groups,
    })
}

/// Where the stages read and write.
enum Target {
    /// An S3 endpoint and its key.
    S3 {
        url: String,
        access_key: String,
        secret_key: String,
    },
    /// Files under a directory, in a tmpfs where there is one.
    Local(tempfile::TempDir),
}

impl Target {
    /// Makes a local run's stage directories (the frameworks' local filesystems do not
    /// make parents) and returns the run's directory, to remove after it.
    fn prepare(&self, prefix: &str) -> anyhow::Result<Option<PathBuf>> {
        let Target::Local(root) = self else {
            return Ok(None);
        };
        let run = root.path().join(BUCKET).join(prefix);
        for stage in 1..=4 {
            let dir = run.join(format!("stage{stage}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
        }
        Ok(Some(run))
    }

    /// The variables that point a stage at this target.
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Target::S3 {
                url,
                access_key,
                secret_key,
            } => vec![
                ("PIPELINE_ENDPOINT", url.clone()),
                ("PIPELINE_ACCESS_KEY", access_key.clone()),
                ("PIPELINE_SECRET_KEY", secret_key.clone()),
            ],
            Target::Local(root) => vec![(
                "PIPELINE_LOCAL_ROOT",
                root.path().to_string_lossy().into_owned(),
            )],
        }
    }
}

/// A directory in `/dev/shm` (memory), or in the system's temporary directory where
/// there is no `/dev/shm`.
fn tmpfs_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("fdw-pipeline-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
}

/// What a stage process prints.
#[derive(Deserialize)]
struct StageDone {
    seconds: f64,
    result: Option<serde_json::Value>,
}

async fn run_stage(
    plan: &PipelinePlan,
    target: &Target,
    prefix: &str,
    rows_per_file: u64,
    stage: u32,
) -> anyhow::Result<StageDone> {
    let output = tokio::process::Command::new(&plan.python)
        .arg(&plan.script)
        .arg(stage.to_string())
        .envs(target.env())
        .env("PIPELINE_BUCKET", BUCKET)
        .env("PIPELINE_PREFIX", prefix)
        .env("PIPELINE_FILES", plan.files.to_string())
        .env("PIPELINE_ROWS_PER_FILE", rows_per_file.to_string())
        .env("PIPELINE_SEED", plan.seed.to_string())
        .env("PIPELINE_THREADS", plan.threads.to_string())
        .output()
        .await
        .with_context(|| format!("running {}", plan.python.display()))?;
    if !output.status.success() {
        bail!(
            "stage {stage} ({prefix}) failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("stage {stage} printed {stdout:?}"))
}

/// Waits until no worker has anything left to upload, and says how long that took.
async fn wait_persisted(client: &Client) -> anyhow::Result<Duration> {
    let started = super::now();
    loop {
        let statuses = client.status().await;
        let drained = statuses.iter().all(|(_, s)| {
            s.as_ref()
                .is_ok_and(|s| s.backlog_objects == 0 && s.uploads_in_flight == 0)
        });
        if drained {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "fdw's outputs were not persisted within an hour: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(modes: &[(&str, f64)]) -> PipelineReport {
        PipelineReport {
            command: String::new(),
            machine: String::new(),
            emulation: String::new(),
            csv_bytes: 1 << 20,
            files: 1,
            rows_per_file: 1,
            runs: modes
                .iter()
                .map(|&(mode, stage)| PipelineRun {
                    mode: mode.into(),
                    stages: vec![stage; 4],
                    total: 4.0 * stage,
                    persisted_after: (mode == FDW).then_some(0.5),
                })
                .collect(),
            result_groups: 64,
        }
    }

    #[test]
    fn the_table_shows_the_modes_that_ran_and_the_ratios_they_allow() {
        let all = report(&[(DIRECT, 6.0), (FDW, 2.0), (MEMORY, 1.0)]).table();
        for expected in [
            "direct S3: mean",
            "fdw: mean",
            "memory, no S3: mean",
            "24.00 s (24.00–24.00)",
            "3.00x",
            "2.00x",
            "persisted in S3 after the run: 0.50 s",
            "(direct ÷ memory): 6.0x",
        ] {
            assert!(all.contains(expected), "{expected:?} not in\n{all}");
        }

        let without_floor = report(&[(DIRECT, 6.0), (FDW, 2.0)]).table();
        assert!(without_floor.contains("speedup"));
        assert!(!without_floor.contains("memory"), "{without_floor}");

        let floor_only = report(&[(MEMORY, 1.0)]).table();
        assert!(floor_only.contains("4.00 s (4.00–4.00)"));
        for absent in ["speedup", "fdw", "direct"] {
            assert!(!floor_only.contains(absent), "{absent:?} in\n{floor_only}");
        }
    }

    #[test]
    fn spreads_are_relative_to_the_mean() {
        let s = Spread::of([9.0, 10.0, 11.0]);
        assert_eq!((s.mean, s.min, s.max), (10.0, 9.0, 11.0));
        assert!((s.relative_range() - 0.2).abs() < 1e-12);
    }
}
