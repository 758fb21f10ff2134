//! The concept-drift detectors against River: detection indices computed
//! once by River 0.26.1 and committed in
//! `tests/fixtures/reference/concept.json`.
//!
//! Regenerate with `scripts/reference/generate` (pins River in
//! `.venv/reference`). Each test runs every case of one detector and
//! requires the drift (and DDM warning) indices to be identical to River's,
//! reporting all failures at once by case name. The end-of-stream state
//! (mean, statistics, window width and sums) must match exactly too: it is
//! built from the same IEEE operations in the same order.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use sidewatch::detect::concept::{
    Adwin, AdwinParams, Ddm, DdmParams, PageHinkley, PageHinkleyParams, Verdict,
};

/// The whole fixture file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    river_version: String,
    streams: BTreeMap<String, Vec<f64>>,
    page_hinkley: Vec<PageHinkleyCase>,
    adwin: Vec<AdwinCase>,
    ddm: Vec<DdmCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageHinkleyCase {
    name: String,
    stream: String,
    params: PageHinkleyOverrides,
    drifts: Vec<usize>,
    final_mean: f64,
    final_n: u64,
    final_increase: f64,
    final_decrease: f64,
}

/// The keyword arguments River was given; the rest are River's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageHinkleyOverrides {
    min_instances: Option<u64>,
    delta: Option<f64>,
    threshold: Option<f64>,
    alpha: Option<f64>,
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdwinCase {
    name: String,
    stream: String,
    params: AdwinOverrides,
    drifts: Vec<usize>,
    widths_at_drift: Vec<u64>,
    totals_at_drift: Vec<f64>,
    variances_at_drift: Vec<f64>,
    /// Set where River 0.26.1 itself panics (see the fixture script): the
    /// other fields then describe the updates before the panic.
    river_panic: Option<RiverPanic>,
    final_width: Option<u64>,
    final_total: Option<f64>,
    final_variance: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RiverPanic {
    /// The index of the update that panicked.
    at: usize,
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdwinOverrides {
    delta: Option<f64>,
    clock: Option<u32>,
    max_buckets: Option<usize>,
    min_window_length: Option<u32>,
    grace_period: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DdmCase {
    name: String,
    stream: String,
    params: DdmOverrides,
    drifts: Vec<usize>,
    warnings: Vec<usize>,
    final_error_rate: f64,
    final_n: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DdmOverrides {
    warm_start: Option<u64>,
    warning_threshold: Option<f64>,
    drift_threshold: Option<f64>,
}

fn fixtures() -> Fixtures {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/concept.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/reference/generate)", path.display()));
    let fixtures: Fixtures =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        fixtures.river_version, "0.26.1",
        "fixtures from another River"
    );
    fixtures
}

fn stream<'a>(fixtures: &'a Fixtures, case: &str, name: &str) -> &'a [f64] {
    fixtures
        .streams
        .get(name)
        .unwrap_or_else(|| panic!("{case}: no stream {name:?}"))
}

/// Collects the mismatches of one detector's cases.
struct Report {
    detector: &'static str,
    cases: usize,
    failures: Vec<String>,
    /// Appended to the summary line.
    note: String,
}

impl Report {
    fn new(detector: &'static str) -> Self {
        Report {
            detector,
            cases: 0,
            failures: Vec::new(),
            note: String::new(),
        }
    }

    /// Requires `got == want` (for floats: the same double).
    fn same<T: PartialEq + std::fmt::Debug>(&mut self, case: &str, what: &str, got: T, want: T) {
        if got != want {
            self.failures.push(format!(
                "{case}: {what}:\n    sidewatch {got:?}\n    River     {want:?}"
            ));
        }
    }

    fn finish(self) {
        assert!(self.cases > 0, "{}: no cases", self.detector);
        assert!(
            self.failures.is_empty(),
            "{} of {} {} cases differ from River:\n{}",
            self.failures.len(),
            self.cases,
            self.detector,
            self.failures.join("\n")
        );
        println!(
            "{}: {} cases identical to River{}",
            self.detector, self.cases, self.note
        );
    }
}

#[test]
fn page_hinkley_matches_river() {
    let fixtures = fixtures();
    let mut report = Report::new("page_hinkley");
    for case in &fixtures.page_hinkley {
        report.cases += 1;
        let defaults = PageHinkleyParams::default();
        let p = &case.params;
        let params = PageHinkleyParams {
            min_instances: p.min_instances.unwrap_or(defaults.min_instances),
            delta: p.delta.unwrap_or(defaults.delta),
            threshold: p.threshold.unwrap_or(defaults.threshold),
            alpha: p.alpha.unwrap_or(defaults.alpha),
            mode: p.mode.as_deref().map_or(defaults.mode, |m| {
                m.parse().unwrap_or_else(|e| panic!("{}: {e}", case.name))
            }),
        };
        let mut ph = PageHinkley::new(params).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let mut drifts = Vec::new();
        for (i, x) in stream(&fixtures, &case.name, &case.stream)
            .iter()
            .enumerate()
        {
            match ph.update(*x) {
                Verdict::Drift => drifts.push(i),
                Verdict::Stable => {}
                Verdict::Warning => panic!("{}: Page–Hinkley warned at {i}", case.name),
            }
        }
        report.same(&case.name, "drift indices", drifts, case.drifts.clone());
        report.same(&case.name, "final n", ph.n(), case.final_n);
        report.same(&case.name, "final mean", ph.mean(), case.final_mean);
        let increase = ph.increase_statistic();
        report.same(&case.name, "final increase", increase, case.final_increase);
        let decrease = ph.decrease_statistic();
        report.same(&case.name, "final decrease", decrease, case.final_decrease);
    }
    report.finish();
}

#[test]
fn adwin_matches_river() {
    let fixtures = fixtures();
    let mut report = Report::new("adwin");
    let mut river_panics = Vec::new();
    for case in &fixtures.adwin {
        report.cases += 1;
        let defaults = AdwinParams::default();
        let p = &case.params;
        let params = AdwinParams {
            delta: p.delta.unwrap_or(defaults.delta),
            clock: p.clock.unwrap_or(defaults.clock),
            max_buckets: p.max_buckets.unwrap_or(defaults.max_buckets),
            min_window_length: p.min_window_length.unwrap_or(defaults.min_window_length),
            grace_period: p.grace_period.unwrap_or(defaults.grace_period),
        };
        let mut adwin = Adwin::new(params).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        // One entry per drift: (index, width, total, variance) after the cut.
        let mut drifts = Vec::new();
        for (i, x) in stream(&fixtures, &case.name, &case.stream)
            .iter()
            .enumerate()
        {
            match adwin.update(*x) {
                Verdict::Drift => {
                    drifts.push((i, adwin.width(), adwin.total(), adwin.variance()));
                }
                Verdict::Stable => {}
                Verdict::Warning => panic!("{}: ADWIN warned at {i}", case.name),
            }
        }
        let river_stopped_at = case.river_panic.as_ref().map(|panic| panic.at);
        if let Some(at) = river_stopped_at {
            // River found a cut at `at` and panicked while dropping a second
            // bucket: sidewatch must report that drift and carry on.
            let ours = drifts.iter().filter(|d| d.0 >= at).count();
            let message = &case.river_panic.as_ref().unwrap().message;
            river_panics.push(format!(
                "{}: River panicked at {at} ({message}); sidewatch drifted there and {} times after",
                case.name,
                ours.saturating_sub(1)
            ));
            let reported = drifts.iter().any(|d| d.0 == at);
            report.same(&case.name, "drift where River panicked", reported, true);
            drifts.retain(|d| d.0 < at);
        }
        let indices: Vec<usize> = drifts.iter().map(|d| d.0).collect();
        report.same(&case.name, "drift indices", indices, case.drifts.clone());
        let widths: Vec<u64> = drifts.iter().map(|d| d.1).collect();
        report.same(
            &case.name,
            "widths at drift",
            widths,
            case.widths_at_drift.clone(),
        );
        let totals: Vec<f64> = drifts.iter().map(|d| d.2).collect();
        report.same(
            &case.name,
            "totals at drift",
            totals,
            case.totals_at_drift.clone(),
        );
        let variances: Vec<f64> = drifts.iter().map(|d| d.3).collect();
        let want_variances = case.variances_at_drift.clone();
        report.same(&case.name, "variances at drift", variances, want_variances);
        if river_stopped_at.is_none() {
            let got = (adwin.width(), adwin.total(), adwin.variance());
            let want = (case.final_width, case.final_total, case.final_variance);
            let want = match want {
                (Some(width), Some(total), Some(variance)) => (width, total, variance),
                _ => panic!("{}: no final state", case.name),
            };
            report.same(&case.name, "final (width, total, variance)", got, want);
        }
    }
    for line in &river_panics {
        println!("{line}");
    }
    report.note = format!(
        " ({} of them up to the update where River panics)",
        river_panics.len()
    );
    report.finish();
}

#[test]
fn ddm_matches_river() {
    let fixtures = fixtures();
    let mut report = Report::new("ddm");
    for case in &fixtures.ddm {
        report.cases += 1;
        let defaults = DdmParams::default();
        let p = &case.params;
        let params = DdmParams {
            warm_start: p.warm_start.unwrap_or(defaults.warm_start),
            warning_threshold: p.warning_threshold.unwrap_or(defaults.warning_threshold),
            drift_threshold: p.drift_threshold.unwrap_or(defaults.drift_threshold),
        };
        let mut ddm = Ddm::new(params).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let (mut drifts, mut warnings) = (Vec::new(), Vec::new());
        for (i, x) in stream(&fixtures, &case.name, &case.stream)
            .iter()
            .enumerate()
        {
            assert!(
                *x == 0.0 || *x == 1.0,
                "{}: {x} is not an error bit",
                case.name
            );
            let verdict = ddm.update(*x == 1.0);
            // The verdict and River-style flags must agree.
            assert_eq!(verdict == Verdict::Drift, ddm.drift_detected());
            assert_eq!(verdict == Verdict::Warning, ddm.warning_detected());
            match verdict {
                Verdict::Drift => drifts.push(i),
                Verdict::Warning => warnings.push(i),
                Verdict::Stable => {}
            }
        }
        report.same(&case.name, "drift indices", drifts, case.drifts.clone());
        let want_warnings = case.warnings.clone();
        report.same(&case.name, "warning indices", warnings, want_warnings);
        report.same(&case.name, "final n", ddm.n(), case.final_n);
        let rate = ddm.error_rate();
        report.same(&case.name, "final error rate", rate, case.final_error_rate);
    }
    report.finish();
}
