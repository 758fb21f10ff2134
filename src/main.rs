//! The `sidewatch` command line: parses arguments and hands over to the
//! library. Errors are reported with context and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sidewatch::baseline::{self, BuildOptions, source::SourceOptions};
use sidewatch::config::{Config, ConfigError, Overrides};
use sidewatch::{Sidecar, telemetry};

#[global_allocator]
static ALLOCATOR: sidewatch::allocator::Mimalloc = sidewatch::allocator::Mimalloc;

#[derive(Parser)]
#[command(
    name = "sidewatch",
    version,
    about = "Inference-monitoring sidecar proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar in front of a model server.
    Run {
        /// YAML config file; optional when --upstream is given.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Proxy listen address, e.g. 0.0.0.0:8000.
        #[arg(long)]
        listen: Option<String>,
        /// The model server, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        upstream: Option<String>,
        /// Admin listen address, e.g. 0.0.0.0:9464.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Run a self-contained demo: a model server, sidewatch and traffic.
    Demo {
        /// How long the traffic runs, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Build reference baselines for drift detection.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// Write an Ed25519 key pair for signing audit checkpoints.
    Keygen {
        /// Directory for audit.key (mode 0600) and audit.pub.
        #[arg(long)]
        out: PathBuf,
        /// Also write audit.enc (mode 0600): a 256-bit key for
        /// `audit.encryption_key`.
        #[arg(long)]
        encryption: bool,
    },
    /// Verify or query a forensic audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check frames, hash chain and checkpoint signatures; exit non-zero
    /// naming the first bad segment and sequence.
    Verify {
        /// The audit directory.
        dir: PathBuf,
        /// The public key written by `sidewatch keygen`.
        #[arg(long)]
        pubkey: PathBuf,
        /// The encryption key of an encrypted log (repeat for a log written
        /// under several keys).
        #[arg(long)]
        key: Vec<PathBuf>,
        /// The log may still be written to (or its writer crashed): accept
        /// records after the last checkpoint, which are reported as not yet
        /// signed, and a partial frame at its very end.
        #[arg(long)]
        live: bool,
    },
    /// Print matching records as JSONL.
    Query {
        /// The audit directory.
        dir: PathBuf,
        /// Records at or after this RFC 3339 time.
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        since: Option<SystemTime>,
        /// Records before this RFC 3339 time.
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        until: Option<SystemTime>,
        /// Entries with this request id.
        #[arg(long)]
        request_id: Option<String>,
        /// Entries from this client.
        #[arg(long)]
        client: Option<String>,
        /// Entries for this model.
        #[arg(long)]
        model: Option<String>,
        /// Only entries a detector flagged.
        #[arg(long)]
        flagged: bool,
        /// The encryption key of an encrypted log (repeat for a log written
        /// under several keys).
        #[arg(long)]
        key: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and list every problem.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Profile reference data (CSV or JSONL) into a baseline file.
    Build {
        /// The model the baseline is for.
        #[arg(long)]
        model: String,
        /// Reference data: *.csv with a header row, or *.jsonl / *.ndjson.
        #[arg(long)]
        from: PathBuf,
        /// Feature columns in model order (default: every column).
        #[arg(long, value_delimiter = ',')]
        features: Option<Vec<String>>,
        /// Columns to treat as categorical even if they look numeric.
        #[arg(long, value_delimiter = ',')]
        categorical: Vec<String>,
        /// Columns that must be numeric (a non-number is then an error).
        #[arg(long, value_delimiter = ',')]
        numeric: Vec<String>,
        /// Column holding the model's prediction (class index or score).
        #[arg(long)]
        prediction: Option<String>,
        /// Quantile bins per numeric feature.
        #[arg(long, default_value_t = 10)]
        bins: usize,
        /// Seed of the reservoir samples.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the baseline JSON.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Keygen { out, encryption } => keygen(&out, encryption),
        Command::Audit { command } => audit(command),
        Command::Run {
            config,
            listen,
            upstream,
            admin,
        } => {
            let overrides = Overrides {
                listen,
                upstream,
                admin,
            };
            let config = match Config::load(config.as_deref(), &overrides) {
                Ok(config) => config,
                Err(error) => return Ok(report_config_error(&error)),
            };
            runtime()?.block_on(run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { duration } => {
            runtime()?.block_on(sidewatch::demo::run(duration))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(Some(&file), &Overrides::default()) {
            Ok(config) => {
                let problems = sidewatch::monitor::check_baselines(&config);
                if problems.is_empty() {
                    println!("{}: OK", file.display());
                    Ok(ExitCode::SUCCESS)
                } else {
                    for problem in problems {
                        eprintln!("error: {problem}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
            Err(error) => Ok(report_config_error(&error)),
        },
        Command::Baseline {
            command:
                BaselineCommand::Build {
                    model,
                    from,
                    features,
                    categorical,
                    numeric,
                    prediction,
                    bins,
                    seed,
                    out,
                },
        } => {
            let source = SourceOptions {
                features,
                categorical,
                numeric,
                prediction,
            };
            let options = BuildOptions {
                bins,
                seed,
                ..BuildOptions::default()
            };
            let baseline = baseline::source::build_from_file(
                &model,
                &from,
                &source,
                options,
                SystemTime::now(),
            )
            .with_context(|| format!("cannot build the baseline for model '{model}'"))?;
            baseline.save(&out).context("cannot write the baseline")?;
            println!("{} Written to {}.", baseline.summary(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report_config_error(error: &ConfigError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sidewatch")
        .build()
        .context("cannot start the async runtime")
}

async fn run(config: Config) -> Result<()> {
    // Handlers first: a SIGTERM that arrives while the sidecar is starting
    // must drain it, not kill the process with the default disposition.
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let sidecar = Sidecar::start_monitoring(&config)
        .await
        .context("cannot start the sidecar")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("Signal received; shutting down.");
    let report = sidecar.shutdown().await;
    if report.connections_cut > 0 {
        tracing::warn!(
            connections = report.connections_cut,
            "Some connections were still busy after shutdown.drain."
        );
    }
    Ok(())
}

fn keygen(out: &std::path::Path, encryption: bool) -> Result<ExitCode> {
    let (secret, public) =
        sidewatch::audit::generate_keys(out).context("cannot write the key pair")?;
    println!("Wrote {} and {}.", secret.display(), public.display());
    if encryption {
        let path = sidewatch::audit::generate_encryption_key(out)
            .context("cannot write the encryption key")?;
        let id = sidewatch::audit::load_encryption_key(&path)?.id_hex();
        println!("Wrote {} (key id {id}).", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn encryption_keys(paths: &[std::path::PathBuf]) -> Result<Vec<sidewatch::audit::EncryptionKey>> {
    paths
        .iter()
        .map(|p| sidewatch::audit::load_encryption_key(p).map_err(Into::into))
        .collect()
}

fn audit(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            dir,
            pubkey,
            key,
            live,
        } => {
            let keys = encryption_keys(&key)?;
            let key = sidewatch::audit::load_verifying_key(&pubkey)?;
            let verify = if live {
                sidewatch::audit::verify_live
            } else {
                sidewatch::audit::verify
            };
            match verify(&dir, &key, &keys) {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("error: {}: {error}", dir.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Query {
            dir,
            since,
            until,
            request_id,
            client,
            model,
            flagged,
            key,
        } => {
            let keys = encryption_keys(&key)?;
            let filter = sidewatch::audit::Filter {
                since,
                until,
                request_id,
                client,
                model,
                flagged,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            sidewatch::audit::query(&dir, &filter, &keys, &mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
