//! The monitoring metrics of one model: counters its shard bumps as
//! observations arrive, and the latest drift report, published with
//! `arc-swap` so `/metrics` and `/v1/drift` read without locking.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::report::ModelDrift;
use super::validate::Violation;

/// Protocol label values for `decode_errors_total`.
pub const PROTOCOLS: [&str; 5] = ["kserve_v2", "tfserving", "openai", "json", "unknown"];
/// Anomaly detector labels, in counter order.
pub const ANOMALY_DETECTORS: [&str; 5] = [
    "robust_z",
    "mahalanobis",
    "half_space_trees",
    "low_confidence",
    "high_entropy",
];
/// Flagged observations kept for `GET /v1/anomalies`, per model.
pub const RECENT_ANOMALIES: usize = 100;

/// Concept detectors, in counter order: Page–Hinkley and ADWIN on the
/// score stream, DDM on the error stream of joined feedback.
pub const CONCEPT_DETECTORS: [&str; 3] = ["page_hinkley", "adwin", "ddm"];
/// Distinct class labels counted before the rest go to `other`.
pub const MAX_CLASSES: usize = 64;

/// Counters and the latest report of one model.
#[derive(Debug)]
pub struct ModelStats {
    /// The model name (the `model` label).
    pub name: Arc<str>,
    /// The configured protocol's label (`unknown` when auto-detected).
    pub protocol: &'static str,
    observations: AtomicU64,
    shard_drops: AtomicU64,
    decode_errors: [AtomicU64; PROTOCOLS.len()],
    /// Changes found, per [`CONCEPT_DETECTORS`].
    concept: [AtomicU64; CONCEPT_DETECTORS.len()],
    /// Reasons given per anomaly detector (see [`ANOMALY_DETECTORS`]).
    anomalies: [AtomicU64; ANOMALY_DETECTORS.len()],
    /// The latest flagged observations, newest last.
    recent: ArcSwap<Vec<super::report::FlaggedObservation>>,
    /// Every anomaly detector's scores (`sidewatch_anomaly_score`).
    pub scores: super::scores::ScoreHistograms,
    /// Index MAX_CLASSES counts every class beyond the first ones.
    predictions: Box<[AtomicU64]>,
    layout: ArcSwapOption<FeatureLayout>,
    report: ArcSwap<ModelDrift>,
}

/// Per-feature counters, fixed once the feature names and bins are known.
#[derive(Debug)]
pub struct FeatureLayout {
    /// Feature names in model order.
    pub names: Vec<String>,
    /// Cumulative observations per feature per baseline bin (empty for categorical).
    pub bins: Vec<Box<[AtomicU64]>>,
    /// The baseline's share per bin, so Prometheus can compute PSI across replicas.
    pub ratios: Vec<Vec<f64>>,
    /// Violations per feature per kind.
    pub violations: Vec<[AtomicU64; Violation::ALL.len()]>,
}

impl FeatureLayout {
    /// Counters for features with the given baseline bin ratios (empty = no bins).
    pub fn new(names: Vec<String>, ratios: Vec<Vec<f64>>) -> Self {
        FeatureLayout {
            bins: ratios
                .iter()
                .map(|r| r.iter().map(|_| AtomicU64::new(0)).collect())
                .collect(),
            violations: names.iter().map(|_| Default::default()).collect(),
            names,
            ratios,
        }
    }

    /// Counts a value in a feature's bin.
    pub fn count_bin(&self, feature: usize, bin: usize) {
        if let Some(counter) = self.bins.get(feature).and_then(|b| b.get(bin)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a validation violation.
    pub fn count_violation(&self, feature: usize, violation: Violation) {
        if let Some(counters) = self.violations.get(feature) {
            counters[violation as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the violation counts of a layout this one replaces.
    pub fn carry_violations(&self, old: &FeatureLayout) {
        for (new, old) in self.violations.iter().zip(&old.violations) {
            for (n, o) in new.iter().zip(old) {
                n.store(o.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    /// Violations counted so far for a feature and kind.
    pub fn violations(&self, feature: usize, violation: Violation) -> u64 {
        self.violations
            .get(feature)
            .map_or(0, |c| c[violation as usize].load(Ordering::Relaxed))
    }
}

impl ModelStats {
    /// Fresh counters for a model speaking `protocol` (a [`PROTOCOLS`] label).
    pub fn new(name: Arc<str>, protocol: &'static str) -> Self {
        ModelStats {
            report: ArcSwap::from_pointee(ModelDrift {
                model: name.to_string(),
                baseline: "missing",
                ..ModelDrift::default()
            }),
            name,
            protocol,
            observations: AtomicU64::new(0),
            shard_drops: AtomicU64::new(0),
            concept: Default::default(),
            anomalies: Default::default(),
            recent: ArcSwap::from_pointee(Vec::new()),
            scores: Default::default(),
            decode_errors: Default::default(),
            predictions: (0..=MAX_CLASSES).map(|_| AtomicU64::new(0)).collect(),
            layout: ArcSwapOption::empty(),
        }
    }

    /// Counts decoded observations.
    pub fn count_observations(&self, n: u64) {
        self.observations.fetch_add(n, Ordering::Relaxed);
    }

    /// Observations decoded so far.
    pub fn observations(&self) -> u64 {
        self.observations.load(Ordering::Relaxed)
    }

    /// Counts a change found by concept detector `index` (see [`CONCEPT_DETECTORS`]).
    pub fn count_concept_drift(&self, index: usize) {
        if let Some(counter) = self.concept.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Changes found by concept detector `index`.
    pub fn concept_drifts(&self, index: usize) -> u64 {
        self.concept
            .get(index)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts a reason given by an anomaly detector (by its label).
    pub fn count_anomaly(&self, detector: &str) {
        if let Some(i) = ANOMALY_DETECTORS.iter().position(|d| *d == detector) {
            self.anomalies[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reasons given so far by an anomaly detector.
    pub fn anomalies(&self, detector: &str) -> u64 {
        ANOMALY_DETECTORS
            .iter()
            .position(|d| *d == detector)
            .map_or(0, |i| self.anomalies[i].load(Ordering::Relaxed))
    }

    /// Publishes the latest flagged observations.
    pub fn publish_anomalies(&self, recent: Vec<super::report::FlaggedObservation>) {
        self.recent.store(Arc::new(recent));
    }

    /// The latest flagged observations, newest last.
    pub fn recent_anomalies(&self) -> Arc<Vec<super::report::FlaggedObservation>> {
        self.recent.load_full()
    }

    /// Counts a decoded batch dropped because the shard was behind.
    pub fn count_shard_drop(&self) {
        self.shard_drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Batches dropped because the shard was behind.
    pub fn shard_drops(&self) -> u64 {
        self.shard_drops.load(Ordering::Relaxed)
    }

    /// Counts an exchange that could not be decoded.
    pub fn count_decode_error(&self, protocol: &str) {
        let i = PROTOCOLS
            .iter()
            .position(|p| *p == protocol)
            .unwrap_or(PROTOCOLS.len() - 1);
        self.decode_errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Decode errors so far, all protocols.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a predicted class.
    pub fn count_prediction(&self, class: u32) {
        let i = (class as usize).min(MAX_CLASSES);
        self.predictions[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Installs the per-feature counters.
    pub fn set_layout(&self, layout: FeatureLayout) {
        self.layout.store(Some(Arc::new(layout)));
    }

    /// The per-feature counters, once known.
    pub fn layout(&self) -> Option<Arc<FeatureLayout>> {
        self.layout.load_full()
    }

    /// Publishes a new evaluation.
    pub fn publish(&self, report: ModelDrift) {
        self.report.store(Arc::new(report));
    }

    /// The latest evaluation.
    pub fn report(&self) -> Arc<ModelDrift> {
        self.report.load_full()
    }
}

/// All models' metrics, encoded at scrape time.
#[derive(Debug, Clone)]
pub struct MonitorMetrics(pub Arc<Vec<Arc<ModelStats>>>);

pub(super) fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, f64>(&value, None)?;
    }
    Ok(())
}

pub(super) fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for MonitorMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let models = self.0.as_slice();
        let m = |s: &ModelStats| ("model", s.name.to_string());
        counter(
            &mut encoder,
            "sidewatch_observations",
            "Observations (rows) decoded from mirrored traffic.",
            models.iter().map(|s| (vec![m(s)], s.observations())),
        )?;
        counter(
            &mut encoder,
            "sidewatch_decode_errors",
            "Mirrored exchanges that could not be decoded, by protocol.",
            models.iter().flat_map(|s| {
                // The model's own protocol always (so rate() works from the
                // start); others only once they occur.
                PROTOCOLS
                    .iter()
                    .zip(&s.decode_errors)
                    .filter_map(move |(p, c)| {
                        let n = c.load(Ordering::Relaxed);
                        (n > 0 || *p == s.protocol)
                            .then(|| (vec![m(s), ("protocol", (*p).to_owned())], n))
                    })
            }),
        )?;
        counter(
            &mut encoder,
            "sidewatch_predictions",
            "Predictions by class index (classes past 63 count as other).",
            models.iter().flat_map(|s| {
                s.predictions.iter().enumerate().filter_map(move |(i, c)| {
                    let n = c.load(Ordering::Relaxed);
                    let class = if i == MAX_CLASSES {
                        "other".to_owned()
                    } else {
                        i.to_string()
                    };
                    (n > 0).then(|| (vec![m(s), ("class", class)], n))
                })
            }),
        )?;
        counter(
            &mut encoder,
            "sidewatch_anomalies",
            "Observations flagged, by detector (one observation may be flagged by several).",
            models.iter().flat_map(|s| {
                ANOMALY_DETECTORS
                    .iter()
                    .map(move |d| (vec![m(s), ("detector", (*d).to_owned())], s.anomalies(d)))
            }),
        )?;
        counter(
            &mut encoder,
            "sidewatch_concept_drift",
            "Concept drift events, by detector: page_hinkley and adwin on prediction scores, ddm on feedback errors.",
            models.iter().flat_map(|s| {
                CONCEPT_DETECTORS.iter().enumerate().map(move |(i, d)| {
                    (
                        vec![m(s), ("detector", (*d).to_owned())],
                        s.concept_drifts(i),
                    )
                })
            }),
        )?;
        super::scores::encode(
            &mut encoder,
            models.iter().map(|s| (s.name.to_string(), &s.scores)),
        )?;
        let layouts: Vec<_> = models
            .iter()
            .filter_map(|s| Some((s, s.layout()?)))
            .collect();
        counter(
            &mut encoder,
            "sidewatch_validation_violations",
            "Input values that failed validation, by feature and kind.",
            layouts.iter().flat_map(|(s, l)| {
                l.names.iter().enumerate().flat_map(move |(f, name)| {
                    Violation::ALL.iter().map(move |v| {
                        let labels = vec![
                            m(s),
                            ("feature", name.clone()),
                            ("kind", v.as_str().to_owned()),
                        ];
                        (labels, l.violations(f, *v))
                    })
                })
            }),
        )?;
        counter(
            &mut encoder,
            "sidewatch_feature_bin",
            "Values per feature per baseline bin since start; with baseline_bin_ratio, PSI can be computed across replicas.",
            layouts.iter().flat_map(|(s, l)| {
                l.names.iter().zip(&l.bins).flat_map(move |(name, bins)| {
                    bins.iter().enumerate().map(move |(b, c)| {
                        let labels = vec![m(s), ("feature", name.clone()), ("bin", b.to_string())];
                        (labels, c.load(Ordering::Relaxed))
                    })
                })
            }),
        )?;
        gauge(
            &mut encoder,
            "sidewatch_baseline_bin_ratio",
            "The baseline's share of values per feature per bin.",
            layouts.iter().flat_map(|(s, l)| {
                l.names
                    .iter()
                    .zip(&l.ratios)
                    .flat_map(move |(name, ratios)| {
                        ratios.iter().enumerate().map(move |(b, r)| {
                            (
                                vec![m(s), ("feature", name.clone()), ("bin", b.to_string())],
                                *r,
                            )
                        })
                    })
            }),
        )?;
        let reports: Vec<_> = models.iter().map(|s| s.report()).collect();
        let results = || {
            reports.iter().flat_map(|r| {
                r.features.iter().flat_map(move |f| {
                    f.methods
                        .iter()
                        .map(move |method| (r.model.clone(), f.feature.clone(), method))
                })
            })
        };
        gauge(
            &mut encoder,
            "sidewatch_drift_score",
            "Latest drift statistic per feature and method (PSI, KS D, JS distance, normalised W1, Hellinger, chi-square).",
            results().map(|(model, feature, r)| {
                (
                    vec![
                        ("model", model),
                        ("feature", feature),
                        ("method", r.method.to_owned()),
                    ],
                    r.score,
                )
            }),
        )?;
        gauge(
            &mut encoder,
            "sidewatch_drift_pvalue",
            "Latest p-value per feature for the tests that have one (ks, chi2).",
            results().filter_map(|(model, feature, r)| {
                let p = r.p_value?;
                Some((
                    vec![
                        ("model", model),
                        ("feature", feature),
                        ("method", r.method.to_owned()),
                    ],
                    p,
                ))
            }),
        )?;
        gauge(
            &mut encoder,
            "sidewatch_drifted_share",
            "Share of a model's features flagged as drifted at the latest evaluation.",
            // Absent, not 0, while a window is too small to test: "unknown"
            // must not read as "no drift" and resolve alerts.
            reports
                .iter()
                .filter(|r| r.evaluated)
                .map(|r| (vec![("model", r.model.clone())], r.drifted_share)),
        )?;
        multivariate_gauges(&mut encoder, &reports)
    }
}

/// `sidewatch_multivariate_drift_{score,threshold}` and
/// `sidewatch_multivariate_drifted`, per model and method; absent while a
/// model's window is too small to judge, like `drifted_share`.
fn multivariate_gauges(
    encoder: &mut DescriptorEncoder,
    reports: &[Arc<ModelDrift>],
) -> Result<(), std::fmt::Error> {
    let methods = || {
        reports.iter().flat_map(|r| {
            r.multivariate
                .iter()
                .filter(|m| m.evaluated)
                .flat_map(|m| &m.methods)
                .map(|method| {
                    let labels = vec![
                        ("model", r.model.clone()),
                        ("method", method.method.to_owned()),
                    ];
                    (labels, method)
                })
        })
    };
    gauge(
        encoder,
        "sidewatch_multivariate_drift_score",
        "Latest multivariate drift statistic per model: pca_reconstruction is the window's mean PCA reconstruction error, mahalanobis_shift Hotelling's T of the window mean.",
        methods().map(|(labels, m)| (labels, m.score)),
    )?;
    gauge(
        encoder,
        "sidewatch_multivariate_drift_threshold",
        "Where the multivariate statistic turns to drift: the PCA band's lower and upper ends, the mean shift's upper threshold.",
        methods().flat_map(|(labels, m)| {
            let upper = m.upper.or(m.threshold);
            [("lower", m.lower), ("upper", upper)]
                .into_iter()
                .filter_map(move |(bound, value)| {
                    let mut labels = labels.clone();
                    labels.push(("bound", bound.to_owned()));
                    Some((labels, value?))
                })
        }),
    )?;
    gauge(
        encoder,
        "sidewatch_multivariate_drifted",
        "1 when a multivariate method flagged the latest window, else 0. Not part of drifted_share.",
        methods().map(|(labels, m)| (labels, f64::from(u8::from(m.drifted)))),
    )
}
