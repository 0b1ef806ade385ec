//! `fdw-bench`: fdw's latency and throughput beside its baselines, measured in the same
//! run. See `fdw_tools::bench` for what each workload does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};
use fdw_persist::emulation::CloudEmulation;
use fdw_tools::bench::{self, Plan, Report, Target, Workloads};

/// Latency histograms and throughput of fdw, beside bare quinn, plain aws-sdk-s3 and
/// a local fsync, all in one run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The standard benchmark: every workload below.
    All(RunArgs),
    /// Put latency by object size and replication setting.
    Put(RunArgs),
    /// Get latency by object size.
    Get(RunArgs),
    /// Put throughput at several client concurrencies.
    Throughput(RunArgs),
    /// The persist pipeline's drain rate to S3.
    Drain(RunArgs),
    /// The seed experiment: four pipeline stages in two frameworks (pyarrow, then
    /// polars), handing data over through the S3 API, directly against S3 and through
    /// fdw's gateway, three runs each.
    Pipeline(PipelineArgs),
    /// Two saved reports side by side, with new ÷ old for every series in both.
    Compare {
        /// The earlier report (report.json).
        old: PathBuf,
        /// The later report.
        new: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Object sizes of the put and get workloads.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4KiB,64KiB,1MiB,16MiB,64MiB"
    )]
    sizes: Vec<ByteSize>,
    /// Replication settings of the put workload, as R/W.
    #[arg(long, value_delimiter = ',', default_value = "1/1,2/2,3/2,3/3")]
    replication: Vec<String>,
    /// Client concurrencies of the throughput workload.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<u32>,
    /// Bytes the drain workload persists, in 64 MiB objects.
    #[arg(long, default_value = "256MiB")]
    drain_bytes: ByteSize,
    /// Multiplies every sample count (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Seed of the data and of the S3 emulation's draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Measure a running cluster (its TOML file) instead of a local one.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Client certificate name, with --config.
    #[arg(long, default_value = "client")]
    identity: String,
    #[command(flatten)]
    emulation: EmulationArgs,
    /// Directory for report.json and latency.svg.
    #[arg(long, default_value = "fdw-bench-report")]
    out: PathBuf,
}

/// The local fdw cluster a run starts.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Workers of the local cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Memory pool of each local worker.
    #[arg(long, default_value = "1GiB")]
    pool_size: ByteSize,
}

/// How the S3 of the baselines and of fdw's under-store behaves.
#[derive(Debug, Args)]
struct EmulationArgs {
    /// S3's first-byte latency (emulated).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    s3_latency: Duration,
    /// Extra latency drawn uniformly from 0 up to this, per request.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    s3_jitter: Duration,
    /// S3 bandwidth per connection, each way; 0 for no cap.
    #[arg(long, default_value = "85MB")]
    s3_bandwidth: ByteSize,
    /// Share of S3 requests refused with 503 SlowDown.
    #[arg(long, default_value_t = 0.0)]
    s3_error_rate: f64,
    /// No emulation: the in-process S3 server as fast as this machine.
    #[arg(long)]
    no_emulation: bool,
}

impl EmulationArgs {
    fn emulation(&self, seed: u64) -> anyhow::Result<CloudEmulation> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.s3_error_rate),
            "--s3-error-rate must be between 0 and 1"
        );
        Ok(if self.no_emulation {
            CloudEmulation::none()
        } else {
            CloudEmulation {
                first_byte_latency: self.s3_latency,
                jitter: self.s3_jitter,
                connection_bytes_per_sec: (self.s3_bandwidth.as_u64() > 0)
                    .then_some(self.s3_bandwidth.as_u64()),
                error_rate: self.s3_error_rate,
                seed,
            }
        })
    }
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// CSV bytes stage 1 generates, all files together (the seed's experiment: 12GB,
    /// with --pool-size large enough for the unpersisted outputs).
    #[arg(long, default_value = "256MiB")]
    size: ByteSize,
    /// Files each stage writes.
    #[arg(long, default_value_t = 32)]
    files: u32,
    /// Runs per mode.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Files each stage works on at once.
    #[arg(long, default_value_t = 4)]
    threads: u32,
    /// Seed of the data and of the S3 emulation's draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Python with pyarrow and polars (made by python/venv.sh when it is the default).
    #[arg(long, default_value = "target/python/bin/python")]
    python: PathBuf,
    /// The stages' script.
    #[arg(long, default_value = "python/pipeline/stage.py")]
    script: PathBuf,
    #[command(flatten)]
    emulation: EmulationArgs,
    /// Modes to run: direct (S3), fdw, memory (the stages on a tmpfs, no S3: the floor,
    /// which holds every stage's output in memory until its run ends).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,fdw,memory"
    )]
    modes: Vec<bench::pipeline::Mode>,
    /// Directory for pipeline.json and pipeline.svg.
    #[arg(long, default_value = "fdw-bench-pipeline")]
    out: PathBuf,
}

impl RunArgs {
    fn plan(&self, workloads: Workloads) -> anyhow::Result<Plan> {
        let replications = self
            .replication
            .iter()
            .map(|rw| {
                let (r, w) = rw
                    .split_once('/')
                    .with_context(|| format!("replication {rw:?} is not R/W"))?;
                Ok((r.trim().parse()?, w.trim().parse()?))
            })
            .collect::<anyhow::Result<Vec<(u8, u8)>>>()?;
        anyhow::ensure!(self.scale > 0.0, "--scale must be positive");
        let emulation = self.emulation.emulation(self.seed)?;
        let target = match &self.config {
            Some(config) => Target::Running {
                config: config.clone(),
                identity: self.identity.clone(),
            },
            None => Target::Local {
                nodes: self.cluster.nodes,
                pool_bytes: self.cluster.pool_size.as_u64(),
            },
        };
        Ok(Plan {
            workloads,
            sizes: self.sizes.iter().map(ByteSize::as_u64).collect(),
            replications,
            concurrencies: self.concurrency.clone(),
            drain_bytes: self.drain_bytes.as_u64(),
            scale: self.scale,
            seed: self.seed,
            emulation,
            target,
            ..Plan::standard()
        })
    }
}

fn only(put: bool, get: bool, throughput: bool, drain: bool) -> Workloads {
    Workloads {
        put,
        get,
        throughput,
        drain,
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (args, workloads) = match cli.command {
        Command::Pipeline(args) => return pipeline(args),
        Command::Compare { old, new } => {
            let (old, new) = (load(&old)?, load(&new)?);
            print!("{}", bench::table::compare(&old, &new));
            return Ok(());
        }
        Command::All(args) => (args, only(true, true, true, true)),
        Command::Put(args) => (args, only(true, false, false, false)),
        Command::Get(args) => (args, only(false, true, false, false)),
        Command::Throughput(args) => (args, only(false, false, true, false)),
        Command::Drain(args) => (args, only(false, false, false, true)),
    };
    let plan = args.plan(workloads)?;
    let report = run(bench::run(plan, command_line()))??;
    print!("{}", bench::table::render(&report));
    write_outputs(
        &args.out,
        ("report.json", serde_json::to_string_pretty(&report)?),
        ("latency.svg", bench::plot::latency_svg(&report)),
    )
}

/// How this process was started, for the report.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Runs `work` to its end on a multi-threaded tokio runtime.
fn run<F: std::future::Future>(work: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    Ok(runtime.block_on(work))
}

/// Writes a run's JSON report and its SVG figure (file name, contents) into `out`.
fn write_outputs(out: &Path, json: (&str, String), svg: (&str, String)) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for (name, text) in [json, svg] {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    println!("\nwrote {}", written.join(" and "));
    Ok(())
}

fn load(path: &PathBuf) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    if args.python == std::path::Path::new("target/python/bin/python") {
        let made = std::process::Command::new("bash")
            .arg("python/venv.sh")
            .status()
            .context("running python/venv.sh (run fdw-bench from the repository's root)")?;
        anyhow::ensure!(made.success(), "python/venv.sh failed");
    }
    let plan = bench::pipeline::PipelinePlan {
        csv_bytes: args.size.as_u64(),
        files: args.files,
        runs: args.runs,
        threads: args.threads,
        seed: args.seed,
        emulation: args.emulation.emulation(args.seed)?,
        nodes: args.cluster.nodes,
        pool_bytes: args.cluster.pool_size.as_u64(),
        python: args.python,
        script: args.script,
        modes: args.modes,
    };
    let report = run(bench::pipeline::run(plan, command_line()))??;
    print!("{}", report.table());
    write_outputs(
        &args.out,
        ("pipeline.json", serde_json::to_string_pretty(&report)?),
        ("pipeline.svg", bench::plot::pipeline_svg(&report)),
    )
}
