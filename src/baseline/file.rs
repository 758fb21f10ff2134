//! Baseline files: JSON on disk, read with a version check and validation,
//! written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::{Baseline, BaselineError, FORMAT};

/// Only the version, read first so that a newer file gets a "newer format"
/// error instead of a confusing complaint about an unknown field.
#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

// === impl Baseline ===

impl Baseline {
    /// Reads, version-checks and validates a baseline file.
    pub fn load(path: impl AsRef<Path>) -> Result<Baseline, BaselineError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| BaselineError::Io {
            path: path.to_owned(),
            error,
        })?;
        let parse = |error| BaselineError::Parse {
            path: path.to_owned(),
            error,
        };
        let probe: FormatProbe = serde_json::from_slice(&bytes).map_err(parse)?;
        if probe.format != FORMAT {
            return Err(BaselineError::Format {
                path: path.to_owned(),
                found: probe.format,
            });
        }
        let baseline: Baseline = serde_json::from_slice(&bytes).map_err(parse)?;
        baseline.validate(&path.display().to_string())?;
        Ok(baseline)
    }

    /// Writes the baseline as JSON, atomically: into a temporary file in the
    /// same directory, flushed to disk, then renamed over `path`, so a
    /// crash leaves the old file or the new one, never half of one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), BaselineError> {
        let path = path.as_ref();
        let temporary = temporary_path(path);
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            json.push(b'\n');
            file.write_all(&json)?;
            file.sync_all()
        })();
        if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path)) {
            // Best effort: the error that matters is the one reported.
            let _ = std::fs::remove_file(&temporary);
            return Err(BaselineError::Io {
                path: path.to_owned(),
                error,
            });
        }
        // Best effort: persist the rename itself. The file is complete
        // either way; this only decides which version survives a power cut.
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|dir| dir.sync_all());
        }
        Ok(())
    }
}

/// `dir/.name.tmp-PID-N` next to `path`: the same directory (and so the
/// same file system) is what makes the final rename atomic; PID and a
/// counter keep concurrent saves from sharing a temporary file.
fn temporary_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "baseline".to_owned());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::tests::{baseline, to_value};

    /// Equal, except that numbers may differ in the last bits: serde_json's
    /// default float parser is not correctly rounded (its `float_roundtrip`
    /// feature is), so `1.9000000000000001` can come back as `1.9`.
    fn assert_same(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(0.0));
                assert!(
                    (x - y).abs() <= 4.0 * f64::EPSILON * y.abs(),
                    "{at}: {x} != {y}"
                );
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    assert_same(x, y, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(x), Value::Object(y)) => {
                assert!(x.keys().eq(y.keys()), "{at}: keys differ");
                for (key, x) in x {
                    assert_same(x, &y[key], &format!("{at}.{key}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sidewatch-baseline-unit-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    #[test]
    fn save_then_load_is_identity_and_leaves_no_temporary() {
        let dir = temp_dir();
        let path = dir.join("iris.baseline.json");
        let original = baseline();
        assert!(original.save(&path).is_ok());
        assert!(original.save(&path).is_ok(), "overwrites");
        let loaded = Baseline::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_same(&to_value(&loaded), &to_value(&original), "baseline");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        assert_eq!(names, ["iris.baseline.json"]);
        let error = original.save(dir.join("missing/x.json"));
        assert!(error.is_err_and(|e| e.to_string().contains("missing/x.json")));
    }

    #[test]
    fn load_refuses_other_formats_unknown_fields_and_inconsistency() {
        let dir = temp_dir();
        let path = dir.join("b.json");
        let write = |value: &serde_json::Value| {
            std::fs::write(&path, value.to_string()).unwrap_or_else(|e| panic!("{e}"));
            match Baseline::load(&path) {
                Ok(_) => panic!("accepted {value}"),
                Err(error) => error.to_string(),
            }
        };
        let good = to_value(&baseline());

        let mut newer = good.clone();
        newer["format"] = 2.into();
        newer["shiny"] = true.into();
        assert!(write(&newer).contains("has baseline format 2; this sidewatch reads format 1"));

        let mut unknown = good.clone();
        unknown["shiny"] = true.into();
        assert!(write(&unknown).contains("unknown field `shiny`"));

        let mut broken = good.clone();
        broken["features"][0]["numeric"]["edges"] = serde_json::json!([3.0, 1.0]);
        broken["mean"] = serde_json::json!([]);
        let text = write(&broken);
        assert!(
            text.contains("edges are not finite and strictly increasing"),
            "{text}"
        );
        assert!(
            text.contains("2 proportions for 2 edges") || text.contains("proportions for 2 edges"),
            "{text}"
        );
        assert!(
            text.contains("mean has 0 values for 1 numeric features"),
            "{text}"
        );

        let missing = dir.join("nope.json");
        assert!(Baseline::load(&missing).is_err_and(|e| e.to_string().contains("nope.json")));
    }
}
