//! Running a [`Plan`]: the systems under test, one operation of each, and the
//! workloads that sample them in turn.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fdw_client::{Client, Replication, WriteType};
use fdw_engine::{HugePagePolicy, LocalCluster, PoolConfig};
use fdw_persist::s3_server::S3Server;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::baseline::{self, QuinnFloor};
use super::machine::Machine;
use super::report::{Latency, Report, Series, Settings};
use super::{Kind, Plan, Target, describe, mib_per_s, now};

/// The S3 bucket (a directory of the in-process server) everything persists to.
const LAKE: &str = "lake";
/// fdw's bucket.
const BUCKET: &str = "bench";
const CHUNK: u64 = 64 << 10;
const THROUGHPUT_OBJECT: u64 = 1 << 20;
const DRAIN_OBJECT: u64 = 64 << 20;
/// Uploads the drain workload's pipeline and baseline keep in flight.
const DRAIN_CONCURRENCY: usize = 8;

/// The systems under test and what they share.
struct Env {
    plan: Plan,
    fdw: Client,
    nodes: usize,
    floor: QuinnFloor,
    s3: aws_sdk_s3::Client,
    server: S3Server,
    scratch: tempfile::TempDir,
    progress: ProgressBar,
}

/// One operation of one system.
#[derive(Clone)]
enum Op {
    FdwPut {
        key: String,
        data: Bytes,
        replication: Replication,
    },
    FdwGet {
        key: String,
        len: u64,
    },
    QuinnPut(Bytes),
    QuinnGet(u64),
    S3Put {
        key: String,
        data: Bytes,
    },
    S3Get {
        key: String,
        len: u64,
    },
    FileFsync {
        path: PathBuf,
        data: Bytes,
    },
}

impl Env {
    async fn perform(&self, op: &Op) -> anyhow::Result<()> {
        match op {
            Op::FdwPut {
                key,
                data,
                replication,
            } => {
                self.fdw
                    .put_bytes(BUCKET, key, data.clone(), *replication)
                    .await?;
            }
            Op::FdwGet { key, len } => {
                let got = self.fdw.get(BUCKET, key).await?;
                anyhow::ensure!(got.len() as u64 == *len, "fdw get of {key}: wrong length");
            }
            Op::QuinnPut(data) => self.floor.put(data).await?,
            Op::QuinnGet(len) => self.floor.get(*len).await?,
            Op::S3Put { key, data } => {
                let part = self.plan.part_bytes as usize;
                baseline::put_s3(&self.s3, LAKE, key, data, part).await?;
            }
            Op::S3Get { key, len } => {
                let got = baseline::get_s3(&self.s3, LAKE, key).await?;
                anyhow::ensure!(got == *len, "GetObject of {key}: wrong length");
            }
            Op::FileFsync { path, data } => {
                let (path, data) = (path.clone(), data.clone());
                tokio::task::spawn_blocking(move || baseline::write_fsync(&path, &data)).await??;
            }
        }
        Ok(())
    }
}

/// A series being sampled: what it is, its operation and how many to take.
struct Cell {
    series: Series,
    op: Op,
    count: u64,
    histogram: Histogram<u64>,
    busy: Duration,
}

impl Cell {
    fn new(series: Series, op: Op, count: u64) -> Self {
        Self {
            series,
            op,
            count,
            histogram: Histogram::new(3).expect("3 significant figures are valid"),
            busy: Duration::ZERO,
        }
    }

    fn finish(mut self) -> Series {
        let n = self.histogram.len();
        self.series.samples = n;
        self.series.latency = Some(Latency::from_histogram(&self.histogram));
        self.series.mib_per_s = mib_per_s(n * self.series.object_bytes, self.busy);
        self.series
    }
}

fn series(workload: &str, system: &str, baseline: bool, bytes: u64, concurrency: u32) -> Series {
    Series {
        workload: workload.to_owned(),
        system: system.to_owned(),
        baseline,
        object_bytes: bytes,
        concurrency,
        samples: 0,
        latency: None,
        mib_per_s: 0.0,
    }
}

fn fdw_name(r: u8, w: u8) -> String {
    format!("fdw R={r} W={w}")
}

/// Reproducible bytes: a xorshift stream from the seed and the object's number.
pub fn object(seed: u64, n: u64, len: u64) -> Bytes {
    let mut x = (seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len as usize);
    Bytes::from(out)
}

/// Runs the plan and returns its report; `command` is recorded in it.
pub async fn run(plan: Plan, command: String) -> anyhow::Result<Report> {
    let scratch = tempfile::tempdir().context("scratch directory")?;
    std::fs::create_dir(scratch.path().join(LAKE))?;
    std::fs::create_dir(scratch.path().join("files"))?;
    let mut emulation = plan.emulation.clone();
    emulation.seed = plan.seed;
    let server = S3Server::start_emulating(scratch.path(), emulation).await?;
    let s3_config = server.config();
    let s3 = fdw_persist::S3Store::new(&s3_config, LAKE, "")
        .client()
        .clone();
    let (cluster, fdw, nodes, settings) = match &plan.target {
        Target::Local { nodes, pool_bytes } => {
            let (cluster, client) =
                local_cluster(*nodes, *pool_bytes, &s3_config, plan.part_bytes, |_| {}).await?;
            let settings = settings(
                &plan,
                format!("local cluster of {nodes} workers on loopback"),
                *pool_bytes,
            );
            (Some(cluster), client, *nodes as usize, settings)
        }
        Target::Running { config, identity } => {
            let client = crate::cluster::connect(config, identity).await?;
            let nodes = client.status().await.len();
            let settings = settings(&plan, format!("running cluster {}", config.display()), 0);
            (None, client, nodes, settings)
        }
    };
    let progress = ProgressBar::new(planned_samples(&plan, nodes));
    progress.set_style(
        ProgressStyle::with_template("{msg:<28} [{bar:40}] {pos}/{len} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let env = Arc::new(Env {
        plan: plan.clone(),
        fdw,
        nodes,
        floor: QuinnFloor::start().await?,
        s3,
        server,
        scratch,
        progress,
    });
    let mut all = Vec::new();
    if plan.workloads.put {
        all.extend(put_latency(&env).await?);
    }
    if plan.workloads.get {
        all.extend(get_latency(&env).await?);
    }
    if plan.workloads.throughput {
        all.extend(put_throughput(&env).await?);
    }
    env.progress.finish_and_clear();
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    if plan.workloads.drain {
        if let Target::Local { nodes, .. } = plan.target {
            all.extend(drain(&env, nodes).await?);
        } else {
            eprintln!("fdw-bench: the drain workload needs a local cluster; skipped");
        }
    }
    Ok(Report {
        command,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        seed: plan.seed,
        machine: Machine::detect(),
        settings,
        series: all,
    })
}

/// Workers in this process persisting to `s3`'s lake (under `fdw/`), and a client.
async fn local_cluster(
    nodes: u16,
    pool_bytes: u64,
    s3: &fdw_persist::S3Config,
    part_bytes: u64,
    tune: impl Fn(&mut fdw_engine::node::PersistConfig) + Send + Sync + 'static,
) -> anyhow::Result<(LocalCluster, Client)> {
    let s3 = s3.clone();
    let cluster = LocalCluster::start(nodes, pool(pool_bytes), move |c| {
        c.persist.s3 = Some(s3.clone());
        c.persist.default_location = Some(format!("s3://{LAKE}/fdw").parse().expect("location"));
        c.persist.part_bytes = part_bytes;
        tune(&mut c.persist);
    })
    .await?;
    let client = cluster
        .client("fdw-bench")
        .await
        .map_err(|e| anyhow::anyhow!("client: {e}"))?;
    Ok((cluster, client))
}

fn pool(bytes: u64) -> PoolConfig {
    PoolConfig {
        size_bytes: bytes as usize,
        chunk_size_bytes: CHUNK as usize,
        huge_pages: HugePagePolicy::Auto,
        populate: false,
        lock: false,
    }
}

fn settings(plan: &Plan, target: String, pool_bytes: u64) -> Settings {
    Settings {
        target,
        pool_bytes,
        chunk_bytes: CHUNK,
        write_type: WriteType::AsyncThrough.to_string(),
        emulation: describe(&plan.emulation),
    }
}

/// Replication settings the cluster can hold.
fn replications(env: &Env) -> Vec<(u8, u8)> {
    let fits = |&(r, w): &(u8, u8)| usize::from(r) <= env.nodes && w <= r && w >= 1;
    for skipped in env.plan.replications.iter().filter(|rw| !fits(rw)) {
        eprintln!(
            "fdw-bench: R={} W={} skipped on {} workers",
            skipped.0, skipped.1, env.nodes
        );
    }
    env.plan.replications.iter().copied().filter(fits).collect()
}

fn replication(r: u8, w: u8) -> Replication {
    Replication {
        write_type: WriteType::AsyncThrough,
        replicas: r,
        quorum: w,
    }
}

fn planned_samples(plan: &Plan, nodes: usize) -> u64 {
    let mut total = 0;
    let settings = plan
        .replications
        .iter()
        .filter(|(r, _)| usize::from(*r) <= nodes)
        .count() as u64;
    for &size in &plan.sizes {
        let memory = plan.samples(size, Kind::Memory) + 1;
        let s3 = plan.samples(size, Kind::S3) + 1;
        if plan.workloads.put {
            total += memory * (settings + 1) + s3 + plan.samples(size, Kind::Disk) + 1;
        }
        if plan.workloads.get {
            total += memory * 2 + s3;
        }
    }
    if plan.workloads.throughput {
        for &c in &plan.concurrencies {
            total += 2 * plan
                .samples(THROUGHPUT_OBJECT, Kind::Memory)
                .max(4 * u64::from(c));
            total += plan
                .samples(THROUGHPUT_OBJECT, Kind::S3)
                .max(2 * u64::from(c));
        }
    }
    total
}

/// Takes the cells' samples in turn, one by one, after one warm-up operation each.
async fn in_turn(env: &Env, label: String, mut cells: Vec<Cell>) -> anyhow::Result<Vec<Series>> {
    env.progress.set_message(label);
    for cell in &cells {
        env.perform(&cell.op).await?;
        env.progress.inc(1);
    }
    loop {
        let mut progressed = false;
        for cell in cells.iter_mut().filter(|c| c.histogram.len() < c.count) {
            let started = now();
            env.perform(&cell.op).await?;
            let took = started.elapsed();
            cell.busy += took;
            cell.histogram
                .record(took.as_nanos().max(1) as u64)
                .context("recording a latency")?;
            env.progress.inc(1);
            progressed = true;
        }
        if !progressed {
            return Ok(cells.into_iter().map(Cell::finish).collect());
        }
    }
}

async fn put_latency(env: &Env) -> anyhow::Result<Vec<Series>> {
    let plan = &env.plan;
    let mut out = Vec::new();
    for (n, &size) in plan.sizes.iter().enumerate() {
        let data = object(plan.seed, n as u64, size);
        let memory = plan.samples(size, Kind::Memory);
        let mut cells: Vec<Cell> = replications(env)
            .into_iter()
            .map(|(r, w)| {
                Cell::new(
                    series("put", &fdw_name(r, w), false, size, 1),
                    Op::FdwPut {
                        key: format!("put/{size}/r{r}w{w}"),
                        data: data.clone(),
                        replication: replication(r, w),
                    },
                    memory,
                )
            })
            .collect();
        cells.push(Cell::new(
            series("put", "quinn", true, size, 1),
            Op::QuinnPut(data.clone()),
            memory,
        ));
        cells.push(Cell::new(
            series("put", "aws-sdk-s3", true, size, 1),
            Op::S3Put {
                key: format!("direct/put/{size}"),
                data: data.clone(),
            },
            plan.samples(size, Kind::S3),
        ));
        cells.push(Cell::new(
            series("put", "file+fsync", true, size, 1),
            Op::FileFsync {
                path: env.scratch.path().join("files").join(format!("put-{size}")),
                data,
            },
            plan.samples(size, Kind::Disk),
        ));
        out.extend(in_turn(env, format!("put {}", bytesize::ByteSize(size)), cells).await?);
    }
    Ok(out)
}

async fn get_latency(env: &Env) -> anyhow::Result<Vec<Series>> {
    let plan = &env.plan;
    let r = env.nodes.min(2) as u8;
    let mut out = Vec::new();
    for (n, &size) in plan.sizes.iter().enumerate() {
        let data = object(plan.seed, 1000 + n as u64, size);
        let (fdw_key, s3_key) = (format!("get/{size}"), format!("direct/get/{size}"));
        env.fdw
            .put_bytes(BUCKET, &fdw_key, data.clone(), replication(r, r))
            .await?;
        baseline::put_s3(&env.s3, LAKE, &s3_key, &data, plan.part_bytes as usize).await?;
        let memory = plan.samples(size, Kind::Memory);
        let cells = vec![
            Cell::new(
                series("get", &format!("fdw (R={r})"), false, size, 1),
                Op::FdwGet {
                    key: fdw_key,
                    len: size,
                },
                memory,
            ),
            Cell::new(
                series("get", "quinn", true, size, 1),
                Op::QuinnGet(size),
                memory,
            ),
            Cell::new(
                series("get", "aws-sdk-s3", true, size, 1),
                Op::S3Get {
                    key: s3_key,
                    len: size,
                },
                plan.samples(size, Kind::S3),
            ),
        ];
        out.extend(in_turn(env, format!("get {}", bytesize::ByteSize(size)), cells).await?);
    }
    Ok(out)
}

/// The operation task `n` of a concurrent run repeats.
type OpFor = Box<dyn Fn(u32) -> Op + Send + Sync>;

/// 1 MiB puts by `concurrency` tasks at once, each on keys of its own.
async fn put_throughput(env: &Arc<Env>) -> anyhow::Result<Vec<Series>> {
    let plan = &env.plan;
    let data = object(plan.seed, 2000, THROUGHPUT_OBJECT);
    let r = env.nodes.min(2) as u8;
    let mut out = Vec::new();
    for &c in &plan.concurrencies {
        let memory = plan
            .samples(THROUGHPUT_OBJECT, Kind::Memory)
            .max(4 * u64::from(c));
        let s3 = plan
            .samples(THROUGHPUT_OBJECT, Kind::S3)
            .max(2 * u64::from(c));
        env.progress.set_message(format!("put throughput ×{c}"));
        let systems: [(Series, u64, OpFor); 3] = [
            (
                series(
                    "put-throughput",
                    &fdw_name(r, r),
                    false,
                    THROUGHPUT_OBJECT,
                    c,
                ),
                memory,
                Box::new({
                    let data = data.clone();
                    move |task| Op::FdwPut {
                        key: format!("throughput/{task}"),
                        data: data.clone(),
                        replication: replication(r, r),
                    }
                }),
            ),
            (
                series("put-throughput", "quinn", true, THROUGHPUT_OBJECT, c),
                memory,
                Box::new({
                    let data = data.clone();
                    move |_| Op::QuinnPut(data.clone())
                }),
            ),
            (
                series("put-throughput", "aws-sdk-s3", true, THROUGHPUT_OBJECT, c),
                s3,
                Box::new({
                    let data = data.clone();
                    move |task| Op::S3Put {
                        key: format!("direct/throughput/{task}"),
                        data: data.clone(),
                    }
                }),
            ),
        ];
        for (head, count, op) in systems {
            out.push(concurrently(env, head, c, count, op).await?);
        }
    }
    Ok(out)
}

/// `count` operations, `concurrency` at a time, each task doing its share in turn.
async fn concurrently(
    env: &Arc<Env>,
    mut head: Series,
    concurrency: u32,
    count: u64,
    op: OpFor,
) -> anyhow::Result<Series> {
    let op = Arc::new(op);
    let mut tasks = tokio::task::JoinSet::new();
    let started = now();
    for task in 0..concurrency {
        let share = count / u64::from(concurrency)
            + u64::from(u64::from(task) < count % u64::from(concurrency));
        let (env, op) = (env.clone(), op.clone());
        tasks.spawn(async move {
            let op = op(task);
            let mut histogram = Histogram::<u64>::new(3).expect("valid precision");
            for _ in 0..share {
                let t = now();
                env.perform(&op).await?;
                histogram.record(t.elapsed().as_nanos().max(1) as u64)?;
                env.progress.inc(1);
            }
            anyhow::Ok(histogram)
        });
    }
    let mut all = Histogram::<u64>::new(3).expect("valid precision");
    while let Some(done) = tasks.join_next().await {
        all.add(done??)?;
    }
    let elapsed = started.elapsed();
    head.samples = all.len();
    head.latency = Some(Latency::from_histogram(&all));
    head.mib_per_s = mib_per_s(all.len() * head.object_bytes, elapsed);
    Ok(head)
}

/// The persist pipeline's drain ([`fdw_drain`]) beside plain aws-sdk-s3 multipart
/// uploads of the same bytes at the same concurrency.
async fn drain(env: &Env, nodes: u16) -> anyhow::Result<Vec<Series>> {
    let plan = &env.plan;
    let count = plan.drain_bytes.div_ceil(DRAIN_OBJECT).max(1);
    let objects: Vec<Bytes> = (0..count)
        .map(|n| object(plan.seed, 3000 + n, DRAIN_OBJECT))
        .collect();
    let bytes = count * DRAIN_OBJECT;
    eprintln!(
        "fdw-bench: drain of {count} objects of {} to S3",
        bytesize::ByteSize(DRAIN_OBJECT)
    );

    let direct = baseline::put_s3_all(
        &env.s3,
        LAKE,
        "direct/drain",
        &objects,
        plan.part_bytes as usize,
        DRAIN_CONCURRENCY,
    )
    .await?;

    let fdw = fdw_drain(
        &env.server,
        &objects,
        nodes,
        plan.part_bytes,
        DRAIN_CONCURRENCY,
        "drain",
    )
    .await?;
    let c = DRAIN_CONCURRENCY as u32;
    let mut out = vec![
        series("drain", "fdw persist pipeline", false, DRAIN_OBJECT, c),
        series("drain", "aws-sdk-s3", true, DRAIN_OBJECT, c),
    ];
    for (series, took) in out.iter_mut().zip([fdw, direct]) {
        series.samples = count;
        series.mib_per_s = mib_per_s(bytes, took);
    }
    Ok(out)
}

/// How long fdw's persist pipeline takes to drain `objects` to `server`: a local
/// cluster of `nodes` workers, puts at R=1 under keys `prefix/n`, and a pipeline that
/// waits a few seconds before it starts, so that all puts are in memory first and the
/// window measured is the drain alone — from the first upload request the server sees
/// until no worker has anything left to persist.
pub async fn fdw_drain(
    server: &S3Server,
    objects: &[Bytes],
    nodes: u16,
    part_bytes: u64,
    concurrency: usize,
    prefix: &str,
) -> anyhow::Result<Duration> {
    const DELAY: Duration = Duration::from_secs(5);
    let bytes: u64 = objects.iter().map(|o| o.len() as u64).sum();
    let largest = objects.iter().map(|o| o.len() as u64).max().unwrap_or(0);
    let pool_bytes = (bytes + (256 << 20)).next_multiple_of(2 << 20);
    let (cluster, client) =
        local_cluster(nodes, pool_bytes, &server.config(), part_bytes, move |p| {
            p.initial_delay = DELAY;
            p.concurrency = concurrency;
            p.max_bytes_in_flight = concurrency as u64 * largest;
        })
        .await?;
    let uploads_seen = || server.requests("CreateMultipartUpload") + server.requests("PutObject");
    let before = uploads_seen();
    let put_started = now();
    for (n, data) in objects.iter().enumerate() {
        client
            .put_bytes(
                BUCKET,
                &format!("{prefix}/{n}"),
                data.clone(),
                replication(1, 1),
            )
            .await?;
    }
    if put_started.elapsed() > DELAY {
        eprintln!("fdw-bench: the drain's puts outlasted the pipeline's delay; its rate is low");
    }
    while uploads_seen() == before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = now();
    loop {
        let statuses = client.status().await;
        if statuses
            .iter()
            .all(|(_, s)| s.as_ref().is_ok_and(|s| s.backlog_objects == 0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    cluster.shutdown().await;
    Ok(elapsed)
}
