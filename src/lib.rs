//! sidewatch: a streaming inference-monitoring sidecar.
//!
//! It sits in front of a model server as a low-latency proxy and mirrors
//! every exchange into monitoring without ever making a request wait for it.
//! The modules follow the data flow:
//!
//! - [`config`]: YAML and flags, validated into a [`config::Config`];
//! - [`proxy`]: listener, request handling, upstream clients and the tee;
//! - [`mirror`]: the bounded queue and worker threads behind the tee;
//! - [`telemetry`]: the sidecar's own metrics and logs;
//! - [`admin`]: `/metrics`, health and the JSON API;
//! - [`sidecar`]: all of the above started and stopped together;
//! - [`demo`]: a self-contained model server and traffic for `sidewatch demo`;
//! - [`allocator`]: the global allocator the binary and benches install.

// Denied, not forbidden: the allocator alone calls into mimalloc.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod alert;
#[allow(unsafe_code)]
pub mod allocator;
pub mod audit;
pub mod baseline;
pub mod config;
pub mod demo;
pub mod detect;
pub mod mirror;
pub mod monitor;
pub mod observation;
pub mod protocol;
pub mod proxy;
pub mod sidecar;
pub mod telemetry;
pub mod window;

pub use config::Config;
pub use mirror::{Consumer, Exchange};
pub use sidecar::{ShutdownReport, Sidecar};
