//! The drift statistics against reference vectors computed once by SciPy
//! and committed in `tests/fixtures/reference/drift.json`.
//!
//! Regenerate with `scripts/reference/generate` (pins NumPy and SciPy in
//! `.venv/reference`). Each test checks every case of one family, reports
//! all failures at once by case name, and prints the largest error seen
//! (`cargo test --test reference_drift -- --nocapture`).

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use sidewatch::detect::drift::{
    KsMode, benjamini_hochberg, bonferroni, chi_square, hellinger, jensen_shannon_distance,
    ks_2samp, kstwo_sf, psi, wasserstein_1, wasserstein_1_normalized, wasserstein_1_weighted,
};

/// Reads one family of cases from the fixture file.
fn cases<T: DeserializeOwned>(family: &str) -> Vec<T> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/drift.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/reference/generate)", path.display()));
    let mut all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let family_cases = all
        .remove(family)
        .unwrap_or_else(|| panic!("{} has no {family:?} cases", path.display()));
    serde_json::from_value(family_cases).unwrap_or_else(|e| panic!("{family} cases: {e}"))
}

/// Collects comparisons of one family: the largest error of each quantity,
/// and every failure with its case name.
#[derive(Default)]
struct Report {
    family: &'static str,
    max_errors: Vec<(&'static str, f64)>,
    failures: Vec<String>,
}

impl Report {
    fn new(family: &'static str) -> Self {
        Report {
            family,
            ..Report::default()
        }
    }

    /// Records `|got − want|` against an absolute tolerance.
    fn absolute(
        &mut self,
        case: &str,
        quantity: &'static str,
        got: f64,
        want: f64,
        tolerance: f64,
    ) {
        let error = (got - want).abs();
        self.note(quantity, error);
        // Written so that a NaN error fails too.
        let within = error <= tolerance;
        if !within {
            self.failures.push(format!(
                "{case}: {quantity} = {got:e}, SciPy {want:e} (|error| {error:e} > {tolerance:e})"
            ));
        }
    }

    /// Records the relative error (absolute when SciPy's value is 0),
    /// passing when either the relative or the absolute error is within its
    /// tolerance.
    fn relative(
        &mut self,
        case: &str,
        quantity: &'static str,
        got: f64,
        want: f64,
        relative: f64,
        absolute: f64,
    ) {
        let error = (got - want).abs();
        let scaled = if want == 0.0 {
            error
        } else {
            error / want.abs()
        };
        self.note(quantity, scaled);
        let within = scaled <= relative || error <= absolute;
        if !within {
            self.failures.push(format!(
                "{case}: {quantity} = {got:e}, SciPy {want:e} (relative error {scaled:e})"
            ));
        }
    }

    fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    fn note(&mut self, quantity: &'static str, error: f64) {
        match self.max_errors.iter_mut().find(|(q, _)| *q == quantity) {
            Some((_, max)) => *max = max.max(error),
            None => self.max_errors.push((quantity, error)),
        }
    }

    fn finish(self, count: usize) {
        for (quantity, max) in &self.max_errors {
            println!(
                "{}: {count} cases, max error of {quantity}: {max:e}",
                self.family
            );
        }
        assert!(
            self.failures.is_empty(),
            "{} of {count} {} cases disagree with SciPy:\n{}",
            self.failures.len(),
            self.family,
            self.failures.join("\n")
        );
    }
}

#[derive(Deserialize)]
struct KsCase {
    name: String,
    a: Vec<f64>,
    b: Vec<f64>,
    method: String,
    statistic: f64,
    p_value: f64,
}

#[test]
fn ks_2samp_matches_scipy() {
    let cases: Vec<KsCase> = cases("ks");
    let mut report = Report::new("ks_2samp");
    for case in &cases {
        let mode = match case.method.as_str() {
            "auto" => KsMode::Auto,
            "exact" => KsMode::Exact,
            "asymp" => KsMode::Asymptotic,
            other => panic!("{}: unknown method {other}", case.name),
        };
        let result = match ks_2samp(&case.a, &case.b, mode) {
            Ok(result) => result,
            Err(e) => {
                report.fail(format!("{}: {e}", case.name));
                continue;
            }
        };
        report.absolute(
            &case.name,
            "statistic",
            result.statistic,
            case.statistic,
            1e-9,
        );
        // Auto resolves like SciPy: exact up to 10 000 values per sample.
        let n = case.a.len().max(case.b.len());
        let exact = mode == KsMode::Exact || (mode == KsMode::Auto && n <= 10_000);
        if exact {
            // Both sides compute the same finite sum in double precision.
            report.absolute(
                &case.name,
                "exact p-value",
                result.p_value,
                case.p_value,
                1e-10,
            );
            if result.mode != KsMode::Exact {
                report.fail(format!(
                    "{}: used {:?}, expected exact",
                    case.name, result.mode
                ));
            }
        } else {
            report.absolute(
                &case.name,
                "asymptotic p-value",
                result.p_value,
                case.p_value,
                1e-4,
            );
            if result.mode != KsMode::Asymptotic {
                report.fail(format!(
                    "{}: used {:?}, expected asymptotic",
                    case.name, result.mode
                ));
            }
        }
    }
    report.finish(cases.len());
}

#[derive(Deserialize)]
struct KstwoCase {
    n: u64,
    d: f64,
    sf: f64,
}

#[test]
fn kstwo_sf_matches_scipy() {
    let cases: Vec<KstwoCase> = cases("kstwo");
    let mut report = Report::new("kstwo.sf");
    for case in &cases {
        let name = format!("n={} d={}", case.n, case.d);
        // The brief's bar is 1e-4; every regime does far better.
        report.absolute(&name, "sf", kstwo_sf(case.n, case.d), case.sf, 1e-9);
    }
    report.finish(cases.len());
}

#[derive(Deserialize)]
struct Chi2Case {
    name: String,
    reference: Vec<f64>,
    current: Vec<f64>,
    statistic: f64,
    dof: usize,
    p_value: f64,
}

#[test]
fn chi_square_matches_scipy() {
    let cases: Vec<Chi2Case> = cases("chi2");
    let mut report = Report::new("chi_square");
    for case in &cases {
        let result = match chi_square(&case.reference, &case.current) {
            Ok(result) => result,
            Err(e) => {
                report.fail(format!("{}: {e}", case.name));
                continue;
            }
        };
        if result.dof != case.dof {
            report.fail(format!(
                "{}: dof {} vs SciPy {}",
                case.name, result.dof, case.dof
            ));
        }
        report.relative(
            &case.name,
            "statistic (relative)",
            result.statistic,
            case.statistic,
            1e-9,
            1e-12,
        );
        report.relative(
            &case.name,
            "p-value (relative)",
            result.p_value,
            case.p_value,
            1e-6,
            1e-9,
        );
    }
    report.finish(cases.len());
}

#[derive(Deserialize)]
struct DistanceCase {
    name: String,
    p: Vec<f64>,
    q: Vec<f64>,
    distance: f64,
}

#[test]
fn jensen_shannon_matches_scipy() {
    let cases: Vec<DistanceCase> = cases("js");
    let mut report = Report::new("jensen_shannon_distance");
    for case in &cases {
        match jensen_shannon_distance(&case.p, &case.q) {
            Ok(d) => report.absolute(&case.name, "distance", d, case.distance, 1e-9),
            Err(e) => report.fail(format!("{}: {e}", case.name)),
        }
    }
    report.finish(cases.len());
}

#[test]
fn hellinger_matches_numpy() {
    let cases: Vec<DistanceCase> = cases("hellinger");
    let mut report = Report::new("hellinger");
    for case in &cases {
        match hellinger(&case.p, &case.q) {
            Ok(d) => report.absolute(&case.name, "distance", d, case.distance, 1e-12),
            Err(e) => report.fail(format!("{}: {e}", case.name)),
        }
    }
    report.finish(cases.len());
}

#[derive(Deserialize)]
struct PsiCase {
    name: String,
    reference: Vec<f64>,
    current: Vec<f64>,
    psi: f64,
}

#[test]
fn psi_matches_numpy() {
    let cases: Vec<PsiCase> = cases("psi");
    let mut report = Report::new("psi");
    for case in &cases {
        match psi(&case.reference, &case.current) {
            Ok(value) => report.absolute(&case.name, "psi", value, case.psi, 1e-12),
            Err(e) => report.fail(format!("{}: {e}", case.name)),
        }
    }
    report.finish(cases.len());
}

#[derive(Deserialize)]
struct WassersteinCase {
    name: String,
    a: Vec<f64>,
    b: Vec<f64>,
    wa: Option<Vec<f64>>,
    wb: Option<Vec<f64>>,
    distance: f64,
    normalized: Option<f64>,
}

#[test]
fn wasserstein_matches_scipy() {
    let cases: Vec<WassersteinCase> = cases("wasserstein");
    let mut report = Report::new("wasserstein");
    for case in &cases {
        let distance = match (&case.wa, &case.wb) {
            (Some(wa), Some(wb)) => wasserstein_1_weighted(&case.a, wa, &case.b, wb),
            _ => wasserstein_1(&case.a, &case.b),
        };
        match distance {
            Ok(d) => report.absolute(&case.name, "distance", d, case.distance, 1e-9),
            Err(e) => report.fail(format!("{}: {e}", case.name)),
        }
        if let Some(want) = case.normalized {
            match wasserstein_1_normalized(&case.a, &case.b) {
                Ok(d) => report.relative(&case.name, "normalized (relative)", d, want, 1e-9, 1e-9),
                Err(e) => report.fail(format!("{}: normalized: {e}", case.name)),
            }
        }
    }
    report.finish(cases.len());
}

#[derive(Deserialize)]
struct MultitestCase {
    name: String,
    p_values: Vec<f64>,
    alpha: f64,
    bonferroni: Vec<bool>,
    benjamini_hochberg: Vec<bool>,
}

#[test]
fn corrections_match_statsmodels() {
    let cases: Vec<MultitestCase> = cases("multitest");
    let mut report = Report::new("multiple testing");
    for case in &cases {
        let got = bonferroni(&case.p_values, case.alpha);
        if got != case.bonferroni {
            report.fail(format!(
                "{}: bonferroni {got:?}, expected {:?}",
                case.name, case.bonferroni
            ));
        }
        let got = benjamini_hochberg(&case.p_values, case.alpha);
        if got != case.benjamini_hochberg {
            report.fail(format!(
                "{}: benjamini_hochberg {got:?}, expected {:?}",
                case.name, case.benjamini_hochberg
            ));
        }
    }
    report.finish(cases.len());
}
