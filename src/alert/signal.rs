//! Reading signals: drift reports and counters, turned into labelled samples.
//! Rates are counter deltas since the previous evaluation, so each rule
//! sees what happened during the last `alerts.evaluate_every`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::config::{Rule, Signal, glob_match};
use super::rules::Sample;
use crate::audit::AuditStats;
use crate::mirror::MirrorStats;
use crate::monitor::stats::ANOMALY_DETECTORS;
use crate::monitor::{DriftReports, MonitorView};
use crate::telemetry::ProxyStats;

/// Where signals are read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The monitoring pipeline, when it runs.
    pub monitor: Option<MonitorView>,
    /// The proxy's counters.
    pub proxy: Arc<ProxyStats>,
    /// The tee's counters, when it is on.
    pub mirror: Option<Arc<MirrorStats>>,
    /// Model labels the proxy counts under (configured names plus `unknown`).
    pub models: Vec<String>,
    /// The audit writer's counters, when the audit log is on.
    pub audit: Option<Arc<AuditStats>>,
}

/// One evaluation's view of every source, and the counters of the previous
/// one for rates.
#[derive(Debug, Default)]
pub struct Sampler {
    previous: HashMap<String, (u64, u64)>,
    current: HashMap<String, (u64, u64)>,
}

/// Everything read once per evaluation, shared by the rules.
struct Snapshot {
    drift: Option<DriftReports>,
}

// === impl Sampler ===

impl Sampler {
    /// Reads every rule's samples; counters are read once and remembered.
    pub fn sample(&mut self, sources: &Sources, rules: &[&Rule]) -> Vec<Vec<Sample>> {
        let needs_drift = rules.iter().any(|r| {
            matches!(
                r.signal,
                Signal::DriftScore(_)
                    | Signal::DriftPValue(_)
                    | Signal::DriftedShare
                    | Signal::ConceptEvents
            )
        });
        let snapshot = Snapshot {
            drift: sources
                .monitor
                .as_ref()
                .filter(|_| needs_drift)
                .map(MonitorView::reports),
        };
        self.current.clear();
        let out = rules
            .iter()
            .map(|rule| self.rule(sources, &snapshot, rule))
            .collect();
        // Counters read this time become the base of the next deltas; one
        // not read this time (no rule needs it) keeps its old base.
        for (key, value) in self.current.drain() {
            self.previous.insert(key, value);
        }
        out
    }

    /// The share `numerator / denominator` over the counters' increase since
    /// the previous evaluation; 0 without new events, `None` the first time.
    fn rate(&mut self, key: String, numerator: u64, denominator: u64) -> Option<f64> {
        let before = self.previous.get(&key).copied();
        self.current.insert(key, (numerator, denominator));
        let (n0, d0) = before?;
        let dn = numerator.saturating_sub(n0);
        let dd = denominator.saturating_sub(d0);
        Some(if dd == 0 { 0.0 } else { dn as f64 / dd as f64 })
    }

    /// The increase of a counter since the previous evaluation.
    fn delta(&mut self, key: String, count: u64) -> Option<f64> {
        let before = self.previous.get(&key).copied();
        self.current.insert(key, (count, 0));
        Some(count.saturating_sub(before?.0) as f64)
    }

    fn rule(&mut self, sources: &Sources, snapshot: &Snapshot, rule: &Rule) -> Vec<Sample> {
        let models = |name: &str| rule.models.iter().any(|g| glob_match(g, name));
        let features = |name: &str| rule.features.iter().any(|g| glob_match(g, name));
        let mut out = Vec::new();
        match rule.signal {
            Signal::DriftScore(method) | Signal::DriftPValue(method) => {
                let p_value = matches!(rule.signal, Signal::DriftPValue(_));
                for model in snapshot.drift.iter().flat_map(|d| &d.models) {
                    if !model.evaluated || !models(&model.model) {
                        continue;
                    }
                    for feature in model.features.iter().filter(|f| features(&f.feature)) {
                        for result in feature
                            .methods
                            .iter()
                            .filter(|r| r.method == method.as_str())
                        {
                            let value = if p_value {
                                result.p_value
                            } else {
                                Some(result.score)
                            };
                            if let Some(value) = value {
                                out.push(Sample {
                                    labels: labels(&[
                                        ("model", &model.model),
                                        ("feature", &feature.feature),
                                        ("method", result.method),
                                    ]),
                                    value,
                                });
                            }
                        }
                    }
                }
            }
            Signal::DriftedShare => {
                for model in snapshot.drift.iter().flat_map(|d| &d.models) {
                    if model.evaluated && models(&model.model) {
                        out.push(Sample {
                            labels: labels(&[("model", &model.model)]),
                            value: model.drifted_share,
                        });
                    }
                }
            }
            Signal::ConceptEvents => {
                for model in snapshot.drift.iter().flat_map(|d| &d.models) {
                    if !models(&model.model) {
                        continue;
                    }
                    for concept in &model.concept {
                        let key = format!("concept/{}/{}", model.model, concept.detector);
                        if let Some(value) = self.delta(key, concept.events) {
                            out.push(Sample {
                                labels: labels(&[
                                    ("model", &model.model),
                                    ("detector", concept.detector),
                                ]),
                                value,
                            });
                        }
                    }
                }
            }
            Signal::AnomalyRate | Signal::DecodeErrorRate => {
                let Some(monitor) = &sources.monitor else {
                    return out;
                };
                for name in sources.models.iter().filter(|m| models(m)) {
                    let Some(stats) = monitor.model(name) else {
                        continue;
                    };
                    let observations = stats.observations();
                    if rule.signal == Signal::DecodeErrorRate {
                        let errors = stats.decode_errors();
                        let key = format!("decode/{name}");
                        if let Some(value) = self.rate(key, errors, errors + observations) {
                            out.push(Sample {
                                labels: labels(&[("model", name)]),
                                value,
                            });
                        }
                        continue;
                    }
                    for detector in ANOMALY_DETECTORS {
                        let key = format!("anomaly/{name}/{detector}");
                        if let Some(value) = self.rate(key, stats.anomalies(detector), observations)
                        {
                            out.push(Sample {
                                labels: labels(&[("model", name), ("detector", detector)]),
                                value,
                            });
                        }
                    }
                }
            }
            Signal::MirrorDropRate => {
                if let Some(mirror) = &sources.mirror {
                    let dropped = mirror.dropped_by_reason().map(|(_, n)| n).sum();
                    if let Some(value) = self.rate("mirror".to_owned(), dropped, mirror.offered()) {
                        out.push(Sample {
                            labels: BTreeMap::new(),
                            value,
                        });
                    }
                }
            }
            Signal::UpstreamErrorRate => {
                let errors = sources
                    .models
                    .iter()
                    .flat_map(|m| (500..600).map(move |s| (m, s)))
                    .map(|(m, s)| sources.proxy.requests_with(m, s))
                    .sum();
                let total = sources.proxy.requests_total();
                if let Some(value) = self.rate("upstream".to_owned(), errors, total) {
                    out.push(Sample {
                        labels: BTreeMap::new(),
                        value,
                    });
                }
            }
            Signal::AuditWriteErrors => {
                if let Some(audit) = &sources.audit
                    && let Some(value) = self.delta("audit".to_owned(), audit.write_errors_total())
                {
                    out.push(Sample {
                        labels: BTreeMap::new(),
                        value,
                    });
                }
            }
            Signal::LatencyP99 => {
                let latency = sources.proxy.latency();
                if latency.request.count() > 0 {
                    out.push(Sample {
                        labels: BTreeMap::new(),
                        value: latency.request.quantile_seconds(0.99),
                    });
                }
            }
        }
        out
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
