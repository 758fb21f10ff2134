//! The engine: a task that samples the signals on a tick, steps every
//! rule's state machine and hands notifications to the sinks' queues.
//! It only reads snapshots and atomics, so detection never waits for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::config::{AlertsConfig, Rule};
use super::rules::{Alert, AlertState, RuleState};
use super::signal::{Sampler, Sources};
use super::sink::SinkHandle;

/// What `/v1/alerts` and `/metrics` read: the latest alerts and the
/// notification counters.
#[derive(Debug, Default)]
pub struct AlertRegistry {
    state: Mutex<Published>,
    rules: Vec<(String, String)>,
    /// The firing alerts' `model` label (if any) and fingerprint, swapped
    /// whole at each evaluation so the audit feed reads it without a lock.
    firing: ArcSwap<Vec<(Option<String>, String)>>,
}

#[derive(Debug, Default)]
struct Published {
    alerts: Vec<Alert>,
    evaluations: u64,
    evaluated_at: Option<SystemTime>,
    notifications: BTreeMap<(&'static str, &'static str), u64>,
}

/// The `/v1/alerts` document.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsDocument {
    /// Evaluations so far.
    pub evaluations: u64,
    /// RFC 3339 time of the latest one.
    pub evaluated_at: Option<String>,
    /// Pending, firing and recently resolved alerts.
    pub alerts: Vec<Alert>,
}

/// The running engine and its sinks.
#[derive(Debug)]
pub struct AlertEngine {
    registry: Arc<AlertRegistry>,
    tasks: Vec<JoinHandle<()>>,
}

// === impl AlertRegistry ===

impl AlertRegistry {
    /// A registry for these rules (their names and severities label the
    /// firing gauge even while nothing fires).
    pub fn new(rules: &[Rule]) -> Self {
        AlertRegistry {
            state: Mutex::default(),
            firing: ArcSwap::default(),
            rules: rules
                .iter()
                .map(|r| (r.name.clone(), r.severity.clone()))
                .collect(),
        }
    }

    /// Counts a notification outcome for a sink.
    pub fn count(&self, sink: &'static str, result: &'static str) {
        if let Ok(mut state) = self.state.lock() {
            *state.notifications.entry((sink, result)).or_default() += 1;
        }
    }

    /// Notification outcomes so far, for one sink and result.
    pub fn notifications(&self, sink: &str, result: &str) -> u64 {
        self.state.lock().map_or(0, |s| {
            s.notifications
                .iter()
                .filter(|((k, r), _)| *k == sink && *r == result)
                .map(|(_, n)| *n)
                .sum()
        })
    }

    /// The current alerts.
    pub fn document(&self) -> AlertsDocument {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        AlertsDocument {
            evaluations: state.evaluations,
            evaluated_at: state.evaluated_at.map(super::rules::rfc3339_string),
            alerts: state.alerts.clone(),
        }
    }

    /// Fingerprints of the alerts firing now that concern `model`: those
    /// labelled with it and those about no model in particular.
    pub fn firing_for(&self, model: Option<&str>) -> Vec<String> {
        self.firing
            .load()
            .iter()
            .filter(|(label, _)| label.is_none() || label.as_deref() == model)
            .map(|(_, fingerprint)| fingerprint.clone())
            .collect()
    }

    fn publish(&self, alerts: Vec<Alert>, at: SystemTime) {
        self.firing.store(Arc::new(
            alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .map(|a| (a.labels.get("model").cloned(), a.fingerprint.clone()))
                .collect(),
        ));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.alerts = alerts;
        state.evaluations += 1;
        state.evaluated_at = Some(at);
    }
}

impl Collector for AlertRegistry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (firing, notifications) = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut firing: BTreeMap<(String, String), i64> = self
                .rules
                .iter()
                .map(|(name, severity)| ((name.clone(), severity.clone()), 0))
                .collect();
            for alert in state
                .alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing)
            {
                let key = (
                    alert.labels.get("alertname").cloned().unwrap_or_default(),
                    alert.labels.get("severity").cloned().unwrap_or_default(),
                );
                *firing.entry(key).or_default() += 1;
            }
            (firing, state.notifications.clone())
        };
        let mut family = encoder.encode_descriptor(
            "sidewatch_alerts_firing",
            "Alerts firing now, by rule and severity.",
            None,
            MetricType::Gauge,
        )?;
        for ((alertname, severity), n) in firing {
            let labels = [("alertname", alertname), ("severity", severity)];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "sidewatch_alert_notifications",
            "Alert notifications by sink and result (sent, retried, failed after the last attempt, dropped on a full queue).",
            None,
            MetricType::Counter,
        )?;
        for ((sink, result), n) in notifications {
            let labels = [("sink", sink), ("result", result)];
            family
                .encode_family(&labels)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(&n, None)?;
        }
        Ok(())
    }
}

// === impl AlertEngine ===

impl AlertEngine {
    /// Starts the sinks and the evaluation task on the current runtime.
    /// `generator_url` is where a notification's reader finds the alerts
    /// (`http://<admin>/v1/alerts`).
    pub fn start(config: &AlertsConfig, sources: Sources, generator_url: String) -> AlertEngine {
        let registry = Arc::new(AlertRegistry::new(&config.rules));
        let mut tasks = Vec::new();
        let sinks: Vec<SinkHandle> = config
            .sinks
            .iter()
            .map(|sink| {
                let (handle, task) = SinkHandle::start(
                    sink.clone(),
                    registry.clone(),
                    generator_url.clone(),
                    config.resend_every,
                );
                tasks.push(task);
                handle
            })
            .collect();
        let mut rules: Vec<RuleState> = config.rules.iter().cloned().map(RuleState::new).collect();
        let every = config.evaluate_every;
        let resend_every = config.resend_every;
        let published = registry.clone();
        tasks.push(tokio::spawn(async move {
            let mut sampler = Sampler::default();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = SystemTime::now();
                let rule_refs: Vec<&Rule> = rules.iter().map(RuleState::rule).collect();
                let samples = sampler.sample(&sources, &rule_refs);
                let mut alerts = Vec::new();
                for (state, samples) in rules.iter_mut().zip(samples) {
                    for notification in state.evaluate(now, samples, resend_every) {
                        for sink in &sinks {
                            if !sink.offer(notification.clone()) {
                                published.count(sink.name, "dropped");
                            }
                        }
                    }
                    alerts.extend(state.alerts().cloned());
                }
                published.publish(alerts, now);
            }
        }));
        AlertEngine { registry, tasks }
    }

    /// The alerts and counters, for the admin server.
    pub fn registry(&self) -> &Arc<AlertRegistry> {
        &self.registry
    }

    /// Stops evaluating and sending.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for AlertEngine {
    fn drop(&mut self) {
        self.stop();
    }
}
