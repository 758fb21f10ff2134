//! What the demo leaves for a security engineer: a signed audit log of
//! every request, kept after the run, and the drift alert it raised.
//!
//! The log and its key pair go to a directory of their own under the
//! system's temp directory, which the summary names together with the
//! commands that verify and query it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::alert::{AlertRegistry, AlertState};
use crate::audit;

/// The drift alert's name, as the log sink and `/v1/alerts` show it.
pub const ALERT: &str = "IrisFeaturesDrifted";

/// The audit directory and the key pair that signs and verifies it.
#[derive(Debug)]
pub struct Evidence {
    dir: PathBuf,
    secret: PathBuf,
    public: PathBuf,
}

// === impl Evidence ===

impl Evidence {
    /// A fresh directory with a new key pair; nothing in it is removed at
    /// the end, so the log can be queried after the demo.
    pub fn create() -> anyhow::Result<Evidence> {
        // A name no one can guess, made here (never an existing directory)
        // and private, so no other local user can plant a key or a log.
        let dir = std::env::temp_dir().join(format!(
            "sidewatch-demo-audit-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", dir.display()))?;
        }
        let (secret, public) = audit::generate_keys(&dir.join("keys"))
            .context("cannot write the demo's audit key pair")?;
        Ok(Evidence {
            dir: dir.join("log"),
            secret,
            public,
        })
    }

    /// The log's directory.
    pub fn log(&self) -> &Path {
        &self.dir
    }

    /// The Ed25519 secret key the sidecar signs checkpoints with.
    pub fn signing_key(&self) -> &Path {
        &self.secret
    }

    /// Verifies the closed log as `sidewatch audit verify` would and says
    /// how it went, with the commands to look further.
    pub fn verify(&self) -> String {
        let mut out = String::new();
        let outcome = audit::load_verifying_key(&self.public)
            .map_err(|e| e.to_string())
            .and_then(|key| audit::verify(&self.dir, &key, &[]).map_err(|e| e.to_string()));
        match outcome {
            Ok(summary) => {
                let _ = writeln!(out, "  audit log     {summary}");
            }
            Err(error) => {
                let _ = writeln!(out, "  audit log     VERIFY FAILED: {error}");
            }
        }
        let _ = writeln!(
            out,
            "                verify: sidewatch audit verify {} --pubkey {}\n                query:  sidewatch audit query {} --flagged",
            self.dir.display(),
            self.public.display(),
            self.dir.display()
        );
        out
    }
}

/// The summary's alert line: when the drift alert fired relative to the
/// drift phase and what the log sink did with it.
pub fn alert_summary(
    registry: Option<&AlertRegistry>,
    shift_at: Option<SystemTime>,
    out: &mut String,
) {
    let Some(registry) = registry else {
        return;
    };
    let document = registry.document();
    let fired: Vec<String> = document
        .alerts
        .iter()
        .filter(|a| a.labels.get("alertname").is_some_and(|n| n == ALERT))
        .filter_map(|a| {
            let at = a.fired_at?;
            let relative = match shift_at {
                Some(shift) => match at.duration_since(shift) {
                    Ok(after) => format!("+{:.1}s after the shift", after.as_secs_f64()),
                    Err(before) => {
                        format!("{:.1}s before the shift", before.duration().as_secs_f64())
                    }
                },
                None => String::from("with no shift in this run"),
            };
            let state = match a.state {
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
                AlertState::Pending => "pending",
            };
            Some(format!(
                "{ALERT} fired {relative} (drifted share {:.2}), {state} at the end",
                a.value
            ))
        })
        .collect();
    let line = if fired.is_empty() {
        format!("{ALERT} did not fire")
    } else {
        fired.join("; ")
    };
    let _ = writeln!(
        out,
        "  alerts        {line}; log sink: {} sent",
        registry.notifications("log", "sent")
    );
}

/// When the drift phase began in wall-clock time, if the run has one.
pub fn shift_time(started: SystemTime, drift_start: Option<Duration>) -> Option<SystemTime> {
    drift_start.map(|d| started + d)
}
