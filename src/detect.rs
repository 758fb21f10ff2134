//! Detectors: the statistics that decide whether live traffic looks like
//! the baseline.
//!
//! Everything here is pure and synchronous (no tokio, no I/O, no clock), so
//! it can be tested against reference implementations, fuzzed and
//! benchmarked in isolation. Windows and workers own the state and call in.
//!
//! - [`drift`]: univariate data drift (PSI, Kolmogorov–Smirnov,
//!   Jensen–Shannon, Wasserstein-1, Hellinger, chi-square) and the
//!   multiple-testing corrections across features.

pub mod anomaly;
pub mod concept;
pub mod drift;
pub mod multivariate;
