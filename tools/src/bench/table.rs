//! Reports as people read them: one table per workload and object size, every fdw
//! figure beside its baselines and as a ratio to each; and two runs side by side.

use std::collections::BTreeMap;
use std::fmt::Write;

use bytesize::ByteSize;

use super::report::{Report, Series};

/// The whole report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "fdw-bench {} — {}", report.version, report.command);
    let _ = writeln!(out, "machine:   {}", report.machine);
    let _ = writeln!(out, "target:    {}", report.settings.target);
    let _ = writeln!(
        out,
        "fdw:       {} writes, {} chunks{}",
        report.settings.write_type,
        ByteSize(report.settings.chunk_bytes),
        if report.settings.pool_bytes > 0 {
            format!(", {} pool per worker", ByteSize(report.settings.pool_bytes))
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "S3:        {}", report.settings.emulation);
    let _ = writeln!(out, "seed:      {}", report.seed);
    for ((workload, bytes, concurrency), group) in groups(&report.series) {
        let _ = writeln!(
            out,
            "\n{workload}, {}{}",
            ByteSize(bytes),
            if concurrency > 1 {
                format!(", {concurrency} at a time")
            } else {
                String::new()
            }
        );
        render_group(&mut out, &group);
    }
    out
}

/// Workload, object size and concurrency: the series one table shows.
type Group = (String, u64, u32);

/// Series by [`Group`], in the order they were measured.
fn groups(series: &[Series]) -> Vec<(Group, Vec<&Series>)> {
    let mut order = Vec::new();
    let mut by: BTreeMap<Group, Vec<&Series>> = BTreeMap::new();
    for s in series {
        let key = (s.workload.clone(), s.object_bytes, s.concurrency);
        if !by.contains_key(&key) {
            order.push(key.clone());
        }
        by.entry(key).or_default().push(s);
    }
    order
        .into_iter()
        .map(|key| {
            let group = by.remove(&key).unwrap_or_default();
            (key, group)
        })
        .collect()
}

fn render_group(out: &mut String, group: &[&Series]) {
    let baselines: Vec<&Series> = group.iter().copied().filter(|s| s.baseline).collect();
    let _ = write!(
        out,
        "  {:<22} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "system", "samples", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "MiB/s"
    );
    for b in &baselines {
        let _ = write!(out, " {:>18}", format!("vs {}", b.system));
    }
    out.push('\n');
    for s in group {
        let _ = write!(out, "  {:<22} {:>7}", s.system, s.samples);
        match &s.latency {
            Some(l) => {
                for v in [l.p50, l.p90, l.p99, l.p999, l.max] {
                    let _ = write!(out, " {:>10}", format_us(v));
                }
            }
            None => {
                let _ = write!(
                    out,
                    " {:>10} {:>10} {:>10} {:>10} {:>10}",
                    "", "", "", "", ""
                );
            }
        }
        let _ = write!(out, " {:>9.1}", s.mib_per_s);
        if !s.baseline {
            for b in &baselines {
                let _ = write!(out, " {:>18}", ratio(s, b));
            }
        }
        out.push('\n');
    }
}

/// fdw against a baseline: for latency workloads, fdw's p50 as a multiple of the
/// baseline's (below 1: fdw is faster); for throughput workloads, fdw's MiB/s as a share
/// of the baseline's.
fn ratio(fdw: &Series, base: &Series) -> String {
    let throughput = matches!(fdw.workload.as_str(), "put-throughput" | "drain");
    match (&fdw.latency, &base.latency) {
        (Some(f), Some(b)) if !throughput && b.p50 > 0.0 => {
            let r = f.p50 / b.p50;
            if r >= 0.1 {
                format!("p50 {r:.2}×")
            } else {
                format!("p50 {r:.4}×")
            }
        }
        _ if base.mib_per_s > 0.0 => {
            format!("{:.0} % MiB/s", 100.0 * fdw.mib_per_s / base.mib_per_s)
        }
        _ => "-".to_owned(),
    }
}

fn format_us(us: f64) -> String {
    if us >= 100.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// Two runs' common series side by side, with new ÷ old.
pub fn compare(old: &Report, new: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "old: {} (seed {}) on {}",
        old.command, old.seed, old.machine
    );
    let _ = writeln!(
        out,
        "new: {} (seed {}) on {}",
        new.command, new.seed, new.machine
    );
    if old.machine != new.machine {
        let _ = writeln!(
            out,
            "note: the machines differ; ratios compare machines too"
        );
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<22} {:>9} {:>4} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>9} {:>9} {:>7}",
        "workload",
        "system",
        "size",
        "×",
        "old p50",
        "new p50",
        "ratio",
        "old p99",
        "new p99",
        "ratio",
        "old MiB/s",
        "new MiB/s",
        "ratio"
    );
    let olds: BTreeMap<_, &Series> = old.series.iter().map(|s| (s.key(), s)).collect();
    let mut matched = 0;
    for n in &new.series {
        let Some(o) = olds.get(&n.key()) else {
            continue;
        };
        matched += 1;
        let lat = |s: &Series, f: fn(&super::Latency) -> f64| s.latency.as_ref().map(f);
        let cell = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (format_us(a), format_us(b), format!("{:.2}", b / a)),
            _ => ("-".into(), "-".into(), "-".into()),
        };
        let (o50, n50, r50) = cell(lat(o, |l| l.p50), lat(n, |l| l.p50));
        let (o99, n99, r99) = cell(lat(o, |l| l.p99), lat(n, |l| l.p99));
        let _ = writeln!(
            out,
            "{:<16} {:<22} {:>9} {:>4} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>9.1} {:>9.1} {:>7.2}",
            n.workload,
            n.system,
            ByteSize(n.object_bytes).to_string(),
            n.concurrency,
            o50,
            n50,
            r50,
            o99,
            n99,
            r99,
            o.mib_per_s,
            n.mib_per_s,
            n.mib_per_s / o.mib_per_s.max(1e-9)
        );
    }
    let _ = writeln!(
        out,
        "\n{matched} series in both runs; latency ratios below 1 and throughput ratios above 1 \
         mean the new run is faster"
    );
    out
}
