//! One rule's alerts: the pending → firing → resolved state machine per
//! series, with hysteresis, and the notifications its transitions produce.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::config::{Comparison, Rule};

/// How long a resolved alert stays listed on `/v1/alerts`.
const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// One measured value of a signal, with the labels naming its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series labels (`model`, `feature`, `method`, …).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// The condition held for `for`; notifications went out.
    Firing,
    /// It fired and has cleared.
    Resolved,
}

/// An alert as `/v1/alerts` shows it and sinks receive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Hex hash of the sorted labels: the same series always has the same one.
    pub fingerprint: String,
    /// Where it stands.
    pub state: AlertState,
    /// `alertname`, `severity`, the rule's labels and the series labels.
    pub labels: BTreeMap<String, String>,
    /// The rule's annotations with the values filled in.
    pub annotations: BTreeMap<String, String>,
    /// The latest value of the signal.
    pub value: f64,
    /// When the condition started to hold.
    #[serde(serialize_with = "rfc3339")]
    pub active_at: SystemTime,
    /// When it started firing.
    #[serde(serialize_with = "rfc3339_opt")]
    pub fired_at: Option<SystemTime>,
    /// When it resolved.
    #[serde(serialize_with = "rfc3339_opt")]
    pub resolved_at: Option<SystemTime>,
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// The alert started firing.
    Firing,
    /// It is still firing (Alertmanager expects firing alerts to be re-sent).
    Refresh,
    /// It resolved.
    Resolved,
}

/// What the sinks receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Why.
    pub kind: NotificationKind,
    /// The alert at that moment.
    pub alert: Alert,
}

/// A rule with its current alerts.
#[derive(Debug)]
pub struct RuleState {
    rule: Rule,
    /// By fingerprint.
    alerts: BTreeMap<String, Tracked>,
}

#[derive(Debug)]
struct Tracked {
    alert: Alert,
    last_sent: Option<SystemTime>,
}

// === impl RuleState ===

impl RuleState {
    /// A rule with no alerts yet.
    pub fn new(rule: Rule) -> Self {
        RuleState {
            rule,
            alerts: BTreeMap::new(),
        }
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The current alerts (pending, firing, recently resolved).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().map(|t| &t.alert)
    }

    /// Applies one evaluation's samples at `now`; returns the notifications
    /// its transitions call for. A series that disappears counts as cleared.
    pub fn evaluate(
        &mut self,
        now: SystemTime,
        samples: Vec<Sample>,
        resend_every: Duration,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for sample in samples {
            if !sample.value.is_finite() {
                continue;
            }
            let labels = self.labels(sample.labels);
            let fingerprint = fingerprint(&labels);
            seen.insert(fingerprint.clone());
            let breached = self.rule.threshold.breached(sample.value);
            let tracked = self.alerts.get_mut(&fingerprint);
            match tracked {
                Some(t) if t.alert.state == AlertState::Firing => {
                    t.alert.value = sample.value;
                    if self.rule.threshold.cleared(sample.value) {
                        out.push(resolve(t, now));
                    } else {
                        t.alert.annotations =
                            render_all(&self.rule, &t.alert.labels, t.alert.value);
                        if t.last_sent
                            .is_none_or(|sent| elapsed(sent, now) >= resend_every)
                        {
                            t.last_sent = Some(now);
                            out.push(Notification {
                                kind: NotificationKind::Refresh,
                                alert: t.alert.clone(),
                            });
                        }
                    }
                }
                Some(t) if t.alert.state == AlertState::Pending => {
                    if breached {
                        t.alert.value = sample.value;
                        if elapsed(t.alert.active_at, now) >= self.rule.for_ {
                            out.push(fire(&self.rule, t, now));
                        }
                    } else {
                        self.alerts.remove(&fingerprint);
                    }
                }
                _ if breached => {
                    let annotations = render_all(&self.rule, &labels, sample.value);
                    let mut t = Tracked {
                        alert: Alert {
                            fingerprint: fingerprint.clone(),
                            state: AlertState::Pending,
                            labels,
                            annotations,
                            value: sample.value,
                            active_at: now,
                            fired_at: None,
                            resolved_at: None,
                        },
                        last_sent: None,
                    };
                    if self.rule.for_.is_zero() {
                        out.push(fire(&self.rule, &mut t, now));
                    }
                    self.alerts.insert(fingerprint, t);
                }
                _ => {}
            }
        }
        // Series that vanished: pending ones are forgotten, firing ones resolve.
        self.alerts.retain(|fingerprint, t| {
            if seen.contains(fingerprint) {
                return true;
            }
            match t.alert.state {
                AlertState::Pending => false,
                AlertState::Firing => {
                    out.push(resolve(t, now));
                    true
                }
                AlertState::Resolved => t
                    .alert
                    .resolved_at
                    .is_some_and(|at| elapsed(at, now) < RESOLVED_RETENTION),
            }
        });
        out
    }

    fn labels(&self, series: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels = series;
        labels.extend(self.rule.labels.clone());
        labels.insert("alertname".to_owned(), self.rule.name.clone());
        labels.insert("severity".to_owned(), self.rule.severity.clone());
        labels
    }
}

fn fire(rule: &Rule, t: &mut Tracked, now: SystemTime) -> Notification {
    t.alert.state = AlertState::Firing;
    t.alert.fired_at = Some(now);
    t.alert.annotations = render_all(rule, &t.alert.labels, t.alert.value);
    t.last_sent = Some(now);
    Notification {
        kind: NotificationKind::Firing,
        alert: t.alert.clone(),
    }
}

fn resolve(t: &mut Tracked, now: SystemTime) -> Notification {
    t.alert.state = AlertState::Resolved;
    t.alert.resolved_at = Some(now);
    Notification {
        kind: NotificationKind::Resolved,
        alert: t.alert.clone(),
    }
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

/// The hex SHA-256 prefix of the labels in sorted order: stable across
/// restarts and versions, unlike `std`'s hasher.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (name, value) in labels {
        hash.update(name.as_bytes());
        hash.update([0xff]);
        hash.update(value.as_bytes());
        hash.update([0xfe]);
    }
    hex::encode(&hash.finalize()[..8])
}

fn render_all(
    rule: &Rule,
    labels: &BTreeMap<String, String>,
    value: f64,
) -> BTreeMap<String, String> {
    let mut annotations: BTreeMap<String, String> = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), render(v, labels, value, rule.threshold.value)))
        .collect();
    annotations.entry("summary".to_owned()).or_insert_with(|| {
        let side = match rule.threshold.comparison {
            Comparison::Above => "above",
            Comparison::Below => "below",
        };
        let series: Vec<String> = labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} = {} ({side} {}) for {}",
            rule.signal.name(),
            format_value(value),
            format_value(rule.threshold.value),
            if series.is_empty() {
                "the sidecar".to_owned()
            } else {
                series.join(", ")
            }
        )
    });
    annotations
}

/// Fills `{{ value }}`, `{{ threshold }}` and `{{ labels.NAME }}` (spaces optional).
pub fn render(
    template: &str,
    labels: &BTreeMap<String, String>,
    value: f64,
    threshold: f64,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = rest[start + 2..start + end].trim();
        match key {
            "value" => out.push_str(&format_value(value)),
            "threshold" => out.push_str(&format_value(threshold)),
            _ => match key.strip_prefix("labels.") {
                Some(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
                None => out.push_str(&rest[start..start + end + 2]),
            },
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn format_value(value: f64) -> String {
    if value != 0.0 && (value.abs() < 1e-3 || value.abs() >= 1e6) {
        format!("{value:.3e}")
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// RFC 3339 with milliseconds, as Alertmanager and JSON consumers expect.
pub fn rfc3339_string(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn rfc3339<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_string(*at))
}

fn rfc3339_opt<S: Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&rfc3339_string(*at)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::{Signal, Threshold};

    fn rule(for_secs: u64, comparison: Comparison, value: f64, resolve: f64) -> Rule {
        Rule {
            name: "HighErrors".to_owned(),
            signal: Signal::UpstreamErrorRate,
            features: vec!["*".to_owned()],
            models: vec!["*".to_owned()],
            threshold: Threshold {
                comparison,
                value,
                resolve,
            },
            for_: Duration::from_secs(for_secs),
            severity: "critical".to_owned(),
            labels: [("team".to_owned(), "ml".to_owned())].into(),
            annotations: [(
                "description".to_owned(),
                "rate {{ value }} over {{threshold}} on {{ labels.model }}".to_owned(),
            )]
            .into(),
        }
    }

    fn sample(model: &str, value: f64) -> Vec<Sample> {
        vec![Sample {
            labels: [("model".to_owned(), model.to_owned())].into(),
            value,
        }]
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    const RESEND: Duration = Duration::from_secs(60);

    fn kinds(notifications: &[Notification]) -> Vec<NotificationKind> {
        notifications.iter().map(|n| n.kind).collect()
    }

    #[test]
    fn pending_waits_for_the_for_duration_then_fires_once() {
        let mut state = RuleState::new(rule(30, Comparison::Above, 0.5, 0.5));
        assert!(state.evaluate(at(0), sample("m", 0.9), RESEND).is_empty());
        assert_eq!(state.alerts().next().unwrap().state, AlertState::Pending);
        assert!(state.evaluate(at(15), sample("m", 0.9), RESEND).is_empty());
        let fired = state.evaluate(at(30), sample("m", 0.8), RESEND);
        assert_eq!(kinds(&fired), [NotificationKind::Firing]);
        let alert = &fired[0].alert;
        assert_eq!(alert.state, AlertState::Firing);
        assert_eq!(alert.active_at, at(0));
        assert_eq!(alert.labels["alertname"], "HighErrors");
        assert_eq!(alert.labels["severity"], "critical");
        assert_eq!(alert.labels["team"], "ml");
        assert_eq!(alert.annotations["description"], "rate 0.8 over 0.5 on m");
        assert!(alert.annotations["summary"].contains("upstream.error_rate = 0.8"));
        // Still firing within the resend interval: nothing new.
        assert!(state.evaluate(at(45), sample("m", 0.9), RESEND).is_empty());
        assert!(state.evaluate(at(60), sample("m", 0.9), RESEND).is_empty());
        // Past it: one refresh, not a second "firing".
        assert_eq!(
            kinds(&state.evaluate(at(91), sample("m", 0.9), RESEND)),
            [NotificationKind::Refresh]
        );
    }

    #[test]
    fn a_pending_alert_that_clears_never_fires() {
        let mut state = RuleState::new(rule(30, Comparison::Above, 0.5, 0.5));
        state.evaluate(at(0), sample("m", 0.9), RESEND);
        assert!(state.evaluate(at(20), sample("m", 0.1), RESEND).is_empty());
        assert_eq!(state.alerts().count(), 0);
        // The clock restarts: breaching again at 40 fires at 70, not 40.
        assert!(state.evaluate(at(40), sample("m", 0.9), RESEND).is_empty());
        assert!(state.evaluate(at(60), sample("m", 0.9), RESEND).is_empty());
        assert_eq!(
            kinds(&state.evaluate(at(70), sample("m", 0.9), RESEND)),
            [NotificationKind::Firing]
        );
    }

    #[test]
    fn hysteresis_holds_a_firing_alert_until_the_resolve_level() {
        // Below 0.01 fires; only above 0.05 resolves.
        let mut state = RuleState::new(rule(0, Comparison::Below, 0.01, 0.05));
        assert_eq!(
            kinds(&state.evaluate(at(0), sample("m", 0.001), RESEND)),
            [NotificationKind::Firing]
        );
        assert!(state.evaluate(at(10), sample("m", 0.03), RESEND).is_empty());
        assert_eq!(state.alerts().next().unwrap().state, AlertState::Firing);
        let resolved = state.evaluate(at(20), sample("m", 0.2), RESEND);
        assert_eq!(kinds(&resolved), [NotificationKind::Resolved]);
        assert_eq!(resolved[0].alert.resolved_at, Some(at(20)));
        // Staying clear sends nothing more.
        assert!(state.evaluate(at(30), sample("m", 0.2), RESEND).is_empty());
        // Firing again is a new episode with the same fingerprint.
        let again = state.evaluate(at(40), sample("m", 0.0), RESEND);
        assert_eq!(kinds(&again), [NotificationKind::Firing]);
        assert_eq!(again[0].alert.fingerprint, resolved[0].alert.fingerprint);
        assert_eq!(again[0].alert.active_at, at(40));
    }

    #[test]
    fn a_vanished_series_resolves_once() {
        let mut state = RuleState::new(rule(0, Comparison::Above, 0.5, 0.5));
        state.evaluate(at(0), sample("m", 0.9), RESEND);
        assert_eq!(
            kinds(&state.evaluate(at(10), Vec::new(), RESEND)),
            [NotificationKind::Resolved]
        );
        assert!(state.evaluate(at(20), Vec::new(), RESEND).is_empty());
        // Resolved alerts are listed for a while, then dropped.
        assert_eq!(state.alerts().next().unwrap().state, AlertState::Resolved);
        state.evaluate(at(10 + 15 * 60), Vec::new(), RESEND);
        assert_eq!(state.alerts().count(), 0);
    }

    #[test]
    fn series_are_separate_alerts_with_stable_fingerprints() {
        let mut state = RuleState::new(rule(0, Comparison::Above, 0.5, 0.5));
        let mut samples = sample("a", 0.9);
        samples.extend(sample("b", 0.9));
        samples.extend(sample("c", 0.1));
        let fired = state.evaluate(at(0), samples, RESEND);
        assert_eq!(fired.len(), 2);
        assert_ne!(fired[0].alert.fingerprint, fired[1].alert.fingerprint);
        // Insertion order does not matter; the value is fixed across runs
        // (checked against Python's hashlib).
        let mut one = BTreeMap::new();
        one.insert("b".to_owned(), "2".to_owned());
        one.insert("a".to_owned(), "1".to_owned());
        let mut two = BTreeMap::new();
        two.insert("a".to_owned(), "1".to_owned());
        two.insert("b".to_owned(), "2".to_owned());
        assert_eq!(fingerprint(&one), fingerprint(&two));
        assert_eq!(fingerprint(&one), "c67763e2929c9bd1");
        // Label boundaries count: {a: "1b"} is not {a: "1", b: ""}.
        let shifted: BTreeMap<String, String> = [("a".to_owned(), "1b".to_owned())].into();
        assert_ne!(
            fingerprint(&shifted),
            fingerprint(
                &[
                    ("a".to_owned(), "1".to_owned()),
                    ("b".to_owned(), String::new())
                ]
                .into()
            )
        );
    }

    #[test]
    fn templates_fill_values_and_labels() {
        let labels: BTreeMap<String, String> = [("feature".to_owned(), "age".to_owned())].into();
        assert_eq!(
            render(
                "{{labels.feature}} p={{ value }} < {{ threshold }} {{ other }}",
                &labels,
                0.000123,
                0.01
            ),
            "age p=1.230e-4 < 0.01 {{ other }}"
        );
    }
}
