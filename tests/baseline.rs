//! `sidewatch baseline build` end to end: the real binary on the CSV and
//! JSONL fixtures in `tests/fixtures/baseline/`, its output read back with
//! `Baseline::load`, and its errors. Reference values in
//! `iris.expected.json` come from numpy (see `generate.py` there).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use sidewatch::baseline::source::{self, SourceOptions};
use sidewatch::baseline::{Baseline, FeatureKind, NumericProfile};

const BIN: &str = env!("CARGO_BIN_EXE_sidewatch");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/baseline")
        .join(name)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-baseline-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `sidewatch baseline build --model m --from FROM --out OUT ARGS…`.
fn build(from: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["baseline", "build", "--model", "m", "--from"])
        .arg(from)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("run sidewatch")
}

fn build_ok(from: &Path, args: &[&str]) -> (Baseline, String) {
    let out = temp_dir().join("m.baseline.json");
    let output = build(from, &out, args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let baseline = Baseline::load(&out).unwrap_or_else(|e| panic!("{e}"));
    (
        baseline,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Exit code 1 and the error on stderr.
fn build_err(from: &Path, args: &[&str]) -> String {
    let dir = temp_dir();
    let output = build(from, &dir.join("m.baseline.json"), args);
    assert_eq!(output.status.code(), Some(1));
    assert!(!dir.join("m.baseline.json").exists(), "no file on error");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn close(a: f64, b: f64) -> bool {
    // Both sides went through serde_json's default float parser.
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

fn assert_well_formed(profile: &NumericProfile) {
    assert!(
        profile.edges.windows(2).all(|w| w[0] < w[1]),
        "monotone edges"
    );
    assert_eq!(profile.proportions.len(), profile.edges.len() + 1);
    let sum: f64 = profile.proportions.iter().sum();
    assert!((sum - 1.0).abs() < 1e-9, "proportions sum to {sum}");
    assert!(
        profile.sample.windows(2).all(|w| w[0] <= w[1]),
        "sorted sample"
    );
}

#[test]
fn iris_csv_profile_matches_numpy() {
    let from = fixture("iris.csv");
    let (baseline, stdout) = build_ok(&from, &["--prediction", "predicted"]);
    let sha256 = hex::encode(Sha256::digest(std::fs::read(&from).expect("fixture")));
    assert_eq!(baseline.lineage.sha256.as_deref(), Some(sha256.as_str()));
    assert!(stdout.contains("150 rows"), "{stdout}");
    assert!(stdout.contains(&sha256), "{stdout}");
    assert!(
        stdout.contains("species (categorical, 3 categories)"),
        "{stdout}"
    );
    assert_eq!(baseline.lineage.rows, 150);
    assert!(baseline.lineage.built_by.ends_with("baseline build"));

    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("iris.expected.json")).expect("fixture"))
            .expect("json");
    let numeric = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
    assert_eq!(baseline.numeric_features, numeric);
    for (feature, name) in baseline.features.iter().zip(numeric) {
        assert_eq!(
            (feature.name.as_str(), feature.kind),
            (name, FeatureKind::Numeric)
        );
        assert_eq!(
            (feature.count, feature.missing, feature.invalid),
            (150, 0, 0)
        );
        let profile = feature.numeric.as_ref().expect("numeric profile");
        assert_well_formed(profile);
        assert_eq!(profile.sample.len(), 150);
        let numpy = &expected["features"][name];
        let edges: Vec<f64> = serde_json::from_value(numpy["edges"].clone()).expect("edges");
        assert_eq!(profile.edges.len(), edges.len(), "{name}");
        for (edge, numpy) in profile.edges.iter().zip(&edges) {
            assert!(close(*edge, *numpy), "{name}: edge {edge} vs numpy {numpy}");
        }
        for (field, value) in [
            ("mean", profile.mean),
            ("std", profile.std),
            ("median", profile.median),
            ("mad", profile.mad),
            ("min", profile.min),
            ("max", profile.max),
        ] {
            let numpy = numpy[field].as_f64().expect("number");
            assert!(
                close(value, numpy),
                "{name}.{field}: {value} vs numpy {numpy}"
            );
        }
    }
    for (i, row) in baseline.covariance.iter().enumerate() {
        for (j, value) in row.iter().enumerate() {
            let numpy = expected["covariance"][i][j].as_f64().expect("number");
            assert!(close(*value, numpy), "cov[{i}][{j}] {value} vs {numpy}");
        }
    }
    assert_eq!(baseline.rows.len(), 150);

    let species = &baseline.features[4];
    assert_eq!(species.kind, FeatureKind::Categorical);
    let shares = &species.categorical.as_ref().expect("categorical").shares;
    assert_eq!(
        shares.keys().collect::<Vec<_>>(),
        ["setosa", "versicolor", "virginica"]
    );
    assert!(shares.values().all(|&share| close(share, 1.0 / 3.0)));
    let prediction = baseline.prediction.as_ref().expect("prediction profile");
    assert_eq!(prediction.count, 150);
    assert_eq!(prediction.class_counts.values().sum::<u64>(), 150);
    assert_eq!(
        prediction.class_counts.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(prediction.score.is_none());
    assert!(baseline.check_features(&["sepal_length"]).is_err());
}

#[test]
fn features_select_and_order_columns_and_force_kinds() {
    let args = [
        "--features",
        "species,petal_width",
        "--categorical",
        "petal_width",
        "--bins",
        "4",
    ];
    let (baseline, _) = build_ok(&fixture("iris.csv"), &args);
    let kinds: Vec<_> = baseline
        .features
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("species", FeatureKind::Categorical),
            ("petal_width", FeatureKind::Categorical)
        ]
    );
    assert!(baseline.numeric_features.is_empty() && baseline.covariance.is_empty());
    assert!(baseline.prediction.is_none());
    assert_eq!(baseline.lineage.bins, 4);
    // Without --prediction, the `predicted` column is just another feature.
    let (all, _) = build_ok(&fixture("iris.csv"), &["--bins", "4"]);
    assert_eq!(all.features.len(), 6);
    let bins = all.features[0]
        .numeric
        .as_ref()
        .map(|n| n.proportions.len());
    assert_eq!(bins, Some(4));
}

#[test]
fn jsonl_keeps_key_order_missing_values_and_scores() {
    let (baseline, _) = build_ok(&fixture("accounts.jsonl"), &["--prediction", "score"]);
    let names: Vec<_> = baseline.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["age", "plan", "active", "region"],
        "first-seen key order"
    );
    let counts: Vec<_> = baseline
        .features
        .iter()
        .map(|f| (f.kind, f.count, f.missing))
        .collect();
    assert_eq!(
        counts,
        [
            (FeatureKind::Numeric, 7, 1),
            (FeatureKind::Categorical, 7, 1),
            (FeatureKind::Categorical, 7, 1),
            (FeatureKind::Categorical, 4, 4),
        ]
    );
    let active = baseline.features[2]
        .categorical
        .as_ref()
        .expect("categorical");
    assert_eq!(active.counts.get("true"), Some(&5));
    let age = baseline.features[0].numeric.as_ref().expect("numeric");
    assert_well_formed(age);
    assert_eq!((age.min, age.max, age.median), (27.0, 62.0, 38.0));
    let prediction = baseline.prediction.as_ref().expect("prediction");
    assert_eq!(prediction.count, 7);
    assert!(prediction.class_counts.is_empty());
    let score = prediction.score.as_ref().expect("scores");
    assert_eq!((score.min, score.max, score.sample.len()), (0.35, 0.91, 7));
}

#[test]
fn same_data_and_seed_give_the_same_file() {
    let strip = |mut b: Baseline| {
        b.lineage.built_at.clear();
        b
    };
    let (a, _) = build_ok(&fixture("iris.csv"), &["--seed", "7"]);
    let (b, _) = build_ok(&fixture("iris.csv"), &["--seed", "7"]);
    assert_eq!(strip(a), strip(b));
}

#[test]
fn kinds_are_inferred_unless_forced() {
    let table = source::read(&fixture("mixed.csv"), &SourceOptions::default()).expect("read");
    // `n/a` is not a number, so `height` is categorical; an empty cell is missing.
    assert_eq!(
        table.features,
        [
            ("height".to_owned(), FeatureKind::Categorical),
            ("colour".to_owned(), FeatureKind::Categorical)
        ]
    );
    let error = build_err(&fixture("mixed.csv"), &["--numeric", "height"]);
    assert!(
        error.contains("mixed.csv:3: column 'height': 'n/a' is not a number"),
        "{error}"
    );
}

#[test]
fn bad_input_is_a_clear_error_and_exit_code_1() {
    let cases: [(&str, &[&str], &str); 8] = [
        ("nope.csv", &[], "cannot read"),
        (
            "ragged.csv",
            &[],
            "ragged.csv:4: 4 fields, but the header has 3",
        ),
        (
            "iris.csv",
            &["--features", "sepal_length,colour,size"],
            "--features names unknown columns: colour, size",
        ),
        (
            "iris.csv",
            &["--prediction", "species"],
            "iris.csv:2: column 'species': 'setosa' is not a prediction",
        ),
        (
            "iris.csv",
            &["--categorical", "predicted", "--prediction", "predicted"],
            "--categorical names 'predicted', which is not a feature column",
        ),
        (
            "nested.jsonl",
            &[],
            "nested.jsonl:2: column 'x': arrays and objects are not features",
        ),
        ("iris.csv", &["--bins", "1"], "bins must be 2 to 100"),
        ("generate.py", &[], "name it *.csv, *.jsonl or *.ndjson"),
    ];
    for (file, args, expected) in cases {
        let error = build_err(&fixture(file), args);
        assert!(error.starts_with("error: "), "{error}");
        assert!(error.contains(expected), "{file} {args:?}: {error}");
    }
}

#[test]
fn malformed_files_name_file_and_line() {
    let dir = temp_dir();
    let cases = [
        (
            "twice.jsonl",
            "{\"a\": 1}\n{\"a\": 1, \"a\": 2}\n",
            "twice.jsonl:2: key 'a' appears twice",
        ),
        (
            "list.jsonl",
            "{\"a\": 1}\n\n[1, 2]\n",
            "list.jsonl:3: invalid type: sequence, expected a JSON object at column",
        ),
        (
            "broken.jsonl",
            "{\"a\": 1,\n",
            "broken.jsonl:1: EOF while parsing a value at column 8",
        ),
        (
            "header.csv",
            "a,a\n1,2\n",
            "header.csv:1: header column 2 is empty or repeated: 'a'",
        ),
        ("empty.csv", "", "empty.csv:1: no header row"),
        (
            "only-header.csv",
            "a,b\n",
            "no rows to build the baseline for model 'm'",
        ),
        (
            "blank.csv",
            "a,b\n1,\n2,\n",
            "feature 'b' has no usable values (2 missing, 0 invalid) in 2 rows",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let error = build_err(&path, &[]);
        assert!(error.contains(expected), "{name}: {error}");
    }
}

#[test]
fn a_byte_order_mark_and_crlf_line_ends_are_tolerated() {
    let path = temp_dir().join("excel.csv");
    std::fs::write(&path, "\u{feff}x,y\r\n1,a\r\n2,b\r\n").expect("write");
    let table = source::read(&path, &SourceOptions::default()).expect("read");
    assert_eq!(
        table.features,
        [
            ("x".to_owned(), FeatureKind::Numeric),
            ("y".to_owned(), FeatureKind::Categorical)
        ]
    );
    assert_eq!(table.rows.len(), 2);
}
