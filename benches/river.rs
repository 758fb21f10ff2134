//! sidewatch's Page–Hinkley, ADWIN, DDM and Half-Space Trees against
//! River's on the same streams: replays what
//! `scripts/bench.d/river/river_bench.py` wrote (the streams, the random
//! draws River built its trees from, River's outputs and timings), checks
//! that sidewatch gives the same answers, times it the same way, and prints
//! a Markdown table with both per-sample costs and their ratio.
//!
//! Run through `scripts/bench.d/river/run`, which writes the directory
//! first; by hand: `cargo bench --bench river -- --dir DIR`. Without
//! `--dir` (a plain `cargo bench`) it prints how to run it and exits.
//!
//! Timing is as on River's side: each pass starts from a fresh detector
//! (built outside the clock) and runs the whole stream, `update` per value
//! (the concept detectors; the verdict is recorded) or `score_and_learn`
//! per row (Half-Space Trees, River's score-then-learn order). The median
//! pass counts; there are at least 5 passes, and more until about 2 s were
//! spent on a detector.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sidewatch::detect::anomaly::{HalfSpaceTrees, HstConfig};
use sidewatch::detect::concept::{Adwin, Ddm, PageHinkley, Verdict};

/// Fewest timed passes per detector.
const MIN_PASSES: usize = 5;
/// Passes continue until a detector has taken this long (or `MAX_PASSES`).
const TIME_BUDGET: Duration = Duration::from_secs(2);
const MAX_PASSES: usize = 200;
/// The HST speed-up the issue asks for ("≥ 1000× River per sample").
const HST_TARGET: f64 = 1000.0;

/// `river.json`, as river_bench.py writes it.
#[derive(Deserialize)]
struct RiverRun {
    river: String,
    python: String,
    values: usize,
    rows: usize,
    cols: usize,
    hst: RiverHst,
    detectors: BTreeMap<String, RiverDetector>,
}

#[derive(Deserialize)]
struct RiverHst {
    n_trees: usize,
    height: usize,
    window_size: usize,
    seed: u64,
}

#[derive(Deserialize)]
struct RiverDetector {
    samples: usize,
    /// Wall time of each pass, ns.
    ns: Vec<u64>,
    #[serde(default)]
    detections: Vec<usize>,
    other_cpu: f64,
}

/// sidewatch's timing of one detector.
struct Timing {
    /// Median pass, ns.
    median_ns: f64,
    passes: usize,
    other_cpu: f64,
}

/// One row of the table.
struct Row {
    detector: &'static str,
    key: &'static str,
    stream: String,
    timing: Timing,
    same: String,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    while let Some(arg) = args.next() {
        if arg == "--dir" {
            dir = args.next().map(PathBuf::from);
        }
        // Anything else (cargo's `--bench`, a filter) is ignored.
    }
    let Some(dir) = dir else {
        eprintln!(
            "river: nothing to do without --dir; run scripts/bench.d/river/run (it writes the \
             streams and River's timings, then runs this bench on them)"
        );
        return;
    };
    if let Err(error) = run(&dir) {
        eprintln!("river: {error}");
        std::process::exit(1);
    }
}

fn run(dir: &Path) -> Result<(), String> {
    let text = read(dir, "river.json")?;
    let river: RiverRun = serde_json::from_slice(&text).map_err(|e| format!("river.json: {e}"))?;
    let scores = f64s(&read(dir, "scores.f64")?);
    let errors: Vec<bool> = read(dir, "errors.u8")?.iter().map(|&b| b != 0).collect();
    let rows = f64s(&read(dir, "rows.f64")?);
    let limits: Vec<(f64, f64)> = f64s(&read(dir, "limits.f64")?)
        .chunks_exact(2)
        .map(|p| (p[0], p[1]))
        .collect();
    let uniform = f64s(&read(dir, "hst_uniform.f64")?);
    let river_scores = f64s(&read(dir, "river_hst_scores.f64")?);
    let cols = river.cols;
    if scores.len() != river.values
        || errors.len() != river.values
        || rows.len() != river.rows * cols
        || limits.len() != cols
        || river_scores.len() != river.rows
    {
        return Err("the stream files do not match river.json".to_owned());
    }
    let detector = |name: &str| {
        river
            .detectors
            .get(name)
            .ok_or_else(|| format!("river.json has no {name}"))
    };

    let mut table = Vec::new();
    let values = format!("{} scores", thousands(river.values));
    // Page–Hinkley and ADWIN read the scores, DDM the error bits; each
    // records where it reported drift, as River's side does.
    let (found, timing) = time(|| {
        concept_run(&scores, {
            let mut d = PageHinkley::default();
            move |x| d.update(x)
        })
    });
    table.push(Row {
        detector: "Page–Hinkley",
        key: "page_hinkley",
        stream: values.clone(),
        same: same_detections(&found, &detector("page_hinkley")?.detections),
        timing,
    });
    let (found, timing) = time(|| {
        concept_run(&scores, {
            let mut d = Adwin::default();
            move |x| d.update(x)
        })
    });
    table.push(Row {
        detector: "ADWIN",
        key: "adwin",
        stream: values,
        same: same_detections(&found, &detector("adwin")?.detections),
        timing,
    });
    let (found, timing) = time(|| {
        concept_run(&errors, {
            let mut d = Ddm::default();
            move |x| d.update(x)
        })
    });
    table.push(Row {
        detector: "DDM",
        key: "ddm",
        stream: format!("{} error bits", thousands(river.values)),
        same: same_detections(&found, &detector("ddm")?.detections),
        timing,
    });

    // The trees River built, from the draws of its random.Random(seed).
    let config = HstConfig {
        trees: river.hst.n_trees,
        height: river.hst.height,
        window: river.hst.window_size,
        seed: river.hst.seed,
        ..HstConfig::default()
    };
    let mut draws = uniform.iter().copied();
    let mut short = false;
    let pristine = HalfSpaceTrees::with_uniform(&config, &limits, (0..cols).collect(), || {
        draws.next().unwrap_or_else(|| {
            short = true;
            0.5
        })
    })
    .map_err(|e| e.to_string())?;
    if short {
        return Err("hst_uniform.f64 holds too few draws".to_owned());
    }
    let (got, timing) = time(|| {
        let mut trees = pristine.clone();
        rows.chunks_exact(cols)
            .map(|row| trees.score_and_learn(black_box(row)))
            .collect::<Vec<f64>>()
    });
    let equal = got
        .iter()
        .zip(&river_scores)
        .filter(|(a, b)| a == b)
        .count();
    let worst = got
        .iter()
        .zip(&river_scores)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    table.push(Row {
        detector: "Half-Space Trees",
        key: "half_space_trees",
        stream: format!("{} rows × {cols}", thousands(river.rows)),
        same: if equal == got.len() {
            format!("all {} scores identical", thousands(equal))
        } else {
            format!(
                "**{} of {} scores differ** (max {worst:.3e})",
                thousands(got.len() - equal),
                thousands(got.len())
            )
        },
        timing,
    });

    print_table(&river, &table)
}

/// Runs `update` over `stream`; the indices where it reported drift.
fn concept_run<T: Copy>(stream: &[T], mut update: impl FnMut(T) -> Verdict) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, &x) in stream.iter().enumerate() {
        if update(black_box(x)) == Verdict::Drift {
            found.push(i);
        }
    }
    found
}

/// Times passes of `pass` (each builds its detector first, which is
/// cheap next to a pass); its output from the first pass.
fn time<T>(mut pass: impl FnMut() -> T) -> (T, Timing) {
    let cpu0 = CpuSample::now();
    let first = pass();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < MIN_PASSES || (start.elapsed() < TIME_BUDGET && times.len() < MAX_PASSES) {
        let t = Instant::now();
        black_box(pass());
        times.push(t.elapsed().as_nanos() as f64);
    }
    times.sort_by(f64::total_cmp);
    let timing = Timing {
        median_ns: times[times.len() / 2],
        passes: times.len(),
        other_cpu: cpu0.other_since(),
    };
    (first, timing)
}

fn same_detections(ours: &[usize], river: &[usize]) -> String {
    if ours == river {
        format!("same {} detections", ours.len())
    } else {
        format!(
            "**differ**: {} detections, River {}",
            ours.len(),
            river.len()
        )
    }
}

fn print_table(river: &RiverRun, table: &[Row]) -> Result<(), String> {
    println!(
        "River {} (Python {}) against sidewatch, default parameters; per sample: the median pass \
         over the stream divided by its length.",
        river.river, river.python
    );
    println!();
    println!(
        "| detector | stream | River µs/sample | sidewatch ns/sample | ratio | outputs | other CPU (River / sidewatch) |"
    );
    println!("|---|---|---:|---:|---:|---|---:|");
    let mut hst_ratio = None;
    for row in table {
        let theirs = river
            .detectors
            .get(row.key)
            .ok_or_else(|| format!("river.json has no {}", row.key))?;
        let mut ns = theirs.ns.clone();
        ns.sort_unstable();
        let river_ns = ns
            .get(ns.len() / 2)
            .ok_or_else(|| format!("no River timings for {}", row.key))?;
        let river_per = *river_ns as f64 / theirs.samples as f64;
        let ours_per = row.timing.median_ns / theirs.samples as f64;
        let ratio = river_per / ours_per;
        if row.key == "half_space_trees" {
            hst_ratio = Some(ratio);
        }
        println!(
            "| {} | {} | {:.3} | {:.1} | {} | {} | {:.0}% / {:.0}% |",
            row.detector,
            row.stream,
            river_per / 1000.0,
            ours_per,
            ratio_text(ratio),
            row.same,
            theirs.other_cpu,
            row.timing.other_cpu,
        );
    }
    println!();
    let passes: Vec<String> = table
        .iter()
        .map(|r| format!("{} {}", r.key, r.timing.passes))
        .collect();
    println!(
        "Half-Space Trees: {} trees, height {}, window {}, River's trees (sidewatch built them from \
         the same random.Random({}) draws). Passes: River {}; sidewatch {}.",
        river.hst.n_trees,
        river.hst.height,
        river.hst.window_size,
        river.hst.seed,
        river
            .detectors
            .iter()
            .map(|(k, d)| format!("{k} {}", d.ns.len()))
            .collect::<Vec<_>>()
            .join(", "),
        passes.join(", ")
    );
    if let Some(ratio) = hst_ratio {
        println!();
        println!(
            "Target, Half-Space Trees ≥ {HST_TARGET:.0}× River per sample: {} ({}).",
            ratio_text(ratio),
            if ratio >= HST_TARGET {
                "met"
            } else {
                "**missed**"
            }
        );
    }
    Ok(())
}

fn ratio_text(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}×")
    } else {
        format!("{ratio:.1}×")
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// The machine's busy CPU time and this process's, to tell what other
/// processes used while a detector was timed.
struct CpuSample {
    busy_ticks: u64,
    own_ticks: u64,
    at: Instant,
}

impl CpuSample {
    fn now() -> CpuSample {
        CpuSample {
            busy_ticks: busy_ticks().unwrap_or(0),
            own_ticks: own_ticks().unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// Percent of the machine's CPU other processes used since `self`
    /// (NaN where /proc cannot be read).
    fn other_since(&self) -> f64 {
        let (Some(busy), Some(own)) = (busy_ticks(), own_ticks()) else {
            return f64::NAN;
        };
        // /proc counts in USER_HZ, which Linux fixes at 100.
        let other = (busy.saturating_sub(self.busy_ticks) as f64
            - own.saturating_sub(self.own_ticks) as f64)
            / 100.0;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        (other / (self.at.elapsed().as_secs_f64() * cpus) * 100.0).max(0.0)
    }
}

/// user + nice + system + irq + softirq + steal, as scripts/bench counts.
fn busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some(
        [0, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|&i| fields.get(i))
            .sum(),
    )
}

/// This process's utime + stime.
fn own_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}
