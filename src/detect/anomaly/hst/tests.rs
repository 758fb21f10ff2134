//! Half-Space Trees behaviour; `tests/reference_anomaly.rs` checks the
//! scores against River.

use super::*;

fn config(trees: usize, height: usize, window: usize) -> HstConfig {
    HstConfig {
        trees,
        height,
        window,
        threshold: 0.9,
        seed: 3,
    }
}

fn trees(config: &HstConfig, dims: usize) -> HalfSpaceTrees {
    let limits = vec![(0.0, 1.0); dims];
    HalfSpaceTrees::new(config, &limits, (0..dims).collect()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn scores_zero_until_the_first_window_then_rolls() {
    let mut hst = trees(&config(5, 3, 4), 1);
    for i in 0..3 {
        assert_eq!(hst.score_and_learn(&[0.5]), 0.0, "row {i}");
        assert!(!hst.is_warm());
    }
    hst.learn(&[0.5]);
    assert!(hst.is_warm());
    // The reference window now holds 4 rows at 0.5 and the latest is empty.
    assert_eq!(hst.latest.iter().sum::<u32>(), 0);
    assert_eq!(hst.reference.iter().sum::<u32>(), 5 * 4 * 4);
    // A point on the same path everywhere: every node holds the whole
    // window, so the score is exactly 0.
    assert_eq!(hst.score(&[0.5]), 0.0);
    let far = hst.score(&[0.0]);
    assert!(far > 0.0 && far <= 1.0, "{far}");
}

#[test]
fn outliers_score_higher_than_inliers() {
    let mut hst = trees(&config(25, 8, 100), 2);
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..300 {
        let row = [0.4 + 0.1 * rng.f64(), 0.5 + 0.1 * rng.f64()];
        hst.learn(&row);
    }
    let inlier = hst.score(&[0.45, 0.55]);
    let outlier = hst.score(&[0.95, 0.05]);
    assert!(inlier < 0.5, "{inlier}");
    assert!(outlier > 0.9, "{outlier}");
    let reason = hst
        .check(&[0.95, 0.05])
        .unwrap_or_else(|| panic!("flagged"));
    assert_eq!(reason.detector, Detector::HalfSpaceTrees);
    assert_eq!(reason.features, [0, 1]);
    assert_eq!(reason.threshold, 0.9);
    assert!(hst.check(&[0.45, 0.55]).is_none());
}

#[test]
fn missing_values_follow_the_heavier_child() {
    let mut hst = trees(&config(10, 4, 50), 2);
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..120 {
        hst.learn(&[0.2 + 0.05 * rng.f64(), 0.8 + 0.05 * rng.f64()]);
    }
    // With the second value missing, the walk follows where the latest
    // rows went: this scores like the inlier, not like an outlier.
    let missing = hst.score(&[0.22, f64::NAN]);
    let outlier = hst.score(&[0.22, 0.1]);
    assert!(missing < outlier, "{missing} vs {outlier}");
    hst.learn(&[f64::NAN, f64::NAN]);
}

#[test]
fn one_walk_equals_score_then_learn() {
    // Two windows' worth of rows, a tenth of the values missing, and
    // clustered so that walks stop scoring at varied depths; 12 trees, so
    // the last group of trees walked side by side is a partial one.
    let mut one = trees(&config(12, 5, 40), 3);
    let mut two = one.clone();
    let mut rng = fastrand::Rng::with_seed(9);
    for i in 0..200 {
        let row: Vec<f64> = (0..3)
            .map(|_| match rng.u8(..10) {
                0 => f64::NAN,
                1 => rng.f64(),
                _ => 0.3 + 0.1 * rng.f64(),
            })
            .collect();
        let combined = one.score_and_learn(&row);
        let separate = two.score(&row);
        two.learn(&row);
        assert_eq!(combined.to_bits(), separate.to_bits(), "row {i}");
        assert_eq!(one, two, "row {i}");
    }
    assert!(one.is_warm());
}

#[test]
fn same_seed_same_trees() {
    let a = trees(&config(4, 3, 10), 3);
    let b = trees(&config(4, 3, 10), 3);
    assert_eq!(a, b);
    let other = HstConfig {
        seed: 4,
        ..config(4, 3, 10)
    };
    assert_ne!(a.split_at, trees(&other, 3).split_at);
}

#[test]
fn height_zero_is_a_single_leaf() {
    let mut hst = trees(&config(2, 0, 2), 1);
    hst.learn(&[0.1]);
    hst.learn(&[0.9]);
    assert_eq!(hst.score(&[0.5]), 0.0);
}

#[test]
fn rejects_bad_parameters() {
    let limits = [(0.0, 1.0)];
    for bad in [
        config(0, 8, 250),
        config(25, 8, 0),
        config(25, 40, 250),
        HstConfig {
            threshold: 1.5,
            ..HstConfig::default()
        },
    ] {
        assert!(
            HalfSpaceTrees::new(&bad, &limits, vec![0]).is_err(),
            "{bad:?}"
        );
    }
    assert!(HalfSpaceTrees::new(&HstConfig::default(), &limits, vec![0, 1]).is_err());
    assert_eq!(HstConfig::default().problems(), Vec::<String>::new());
}
