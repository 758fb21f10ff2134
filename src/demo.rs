//! `sidewatch demo`: a model server, the sidecar and traffic in one process.

use std::time::Duration;

/// Runs the demo for `duration`.
pub async fn run(duration: Duration) -> anyhow::Result<()> {
    let _ = duration;
    anyhow::bail!("the demo is not built yet")
}
