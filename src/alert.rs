//! Alerts (DESIGN §6): rules over the sidecar's signals, a pending → firing
//! → resolved state machine per series with hysteresis and stable
//! fingerprints, and sinks (Alertmanager v2, signed webhook, log) that
//! retry from bounded queues without ever holding up detection.
//!
//! - [`config`]: the `alerts:` section and its validation;
//! - [`signal`]: drift reports and counters read as labelled samples;
//! - [`rules`]: one rule's alerts and the notifications they call for;
//! - [`engine`]: the evaluation task, `/v1/alerts` and the alert metrics;
//! - [`sink`]: delivery, retries, webhook signing.

pub mod config;
pub mod engine;
pub mod rules;
pub mod signal;
pub mod sink;

pub use config::{
    AlertsConfig, Comparison, RawAlerts, Rule, Signal, SinkConfig, SinkKind, Threshold,
};
pub use engine::{AlertEngine, AlertRegistry, AlertsDocument};
pub use rules::{Alert, AlertState, Notification, NotificationKind, RuleState, Sample};
pub use signal::Sources;
