//! The drift methods by name, with their default thresholds.

use std::fmt;
use std::str::FromStr;

/// A univariate drift statistic, named as in config (`drift.methods`) and in
/// the `method` label of `sidewatch_drift_score` / `sidewatch_drift_pvalue`.
///
/// Two kinds of decision: distance methods (PSI, JS, Wasserstein, Hellinger)
/// flag drift when the score reaches a threshold; test methods (KS,
/// chi-square) flag drift when the p-value falls below a significance level
/// (alpha, after any multiple-testing correction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Population Stability Index on bin proportions ([`super::psi`]).
    Psi,
    /// Two-sample Kolmogorov–Smirnov test on raw samples ([`super::ks_2samp`]).
    Ks,
    /// Jensen–Shannon distance, base 2, on bin proportions
    /// ([`super::jensen_shannon_distance`]).
    JensenShannon,
    /// Wasserstein-1 distance normalised by the reference std
    /// ([`super::wasserstein_1_normalized`]).
    Wasserstein,
    /// Hellinger distance on bin proportions ([`super::hellinger`]).
    Hellinger,
    /// Chi-square test of homogeneity on category counts
    /// ([`super::chi_square`]).
    ChiSquare,
}

/// A method name that is not one of `psi, ks, js, wasserstein, hellinger,
/// chi2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of psi, ks, js, wasserstein, hellinger, chi2")]
pub struct UnknownMethod(pub String);

impl Method {
    /// Every method, in the order they are reported.
    pub const ALL: [Method; 6] = [
        Method::Psi,
        Method::Ks,
        Method::JensenShannon,
        Method::Wasserstein,
        Method::Hellinger,
        Method::ChiSquare,
    ];

    /// The name used in config and metric labels: `psi`, `ks`, `js`,
    /// `wasserstein`, `hellinger` or `chi2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Psi => "psi",
            Method::Ks => "ks",
            Method::JensenShannon => "js",
            Method::Wasserstein => "wasserstein",
            Method::Hellinger => "hellinger",
            Method::ChiSquare => "chi2",
        }
    }

    /// Whether the method is a hypothesis test judged by its p-value (KS,
    /// chi-square) rather than a distance judged by its score.
    pub fn uses_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::ChiSquare)
    }

    /// The default drift threshold, used when config does not set one:
    ///
    /// - `psi`: 0.2, the conventional "significant shift" level (below 0.1
    ///   is usually read as stable, 0.1–0.2 as a moderate shift);
    /// - `js`: 0.1 (base-2 distance, range 0..1);
    /// - `hellinger`: 0.1 (range 0..1);
    /// - `wasserstein`: 0.1 reference standard deviations;
    /// - `ks`, `chi2`: alpha = 0.05, compared with the p-value.
    pub fn default_threshold(self) -> f64 {
        match self {
            Method::Psi => 0.2,
            Method::JensenShannon | Method::Hellinger | Method::Wasserstein => 0.1,
            Method::Ks | Method::ChiSquare => 0.05,
        }
    }

    /// Whether `value` means drift against `threshold`: for tests, the
    /// p-value is strictly below the threshold (alpha); for distances, the
    /// score is at or above it. NaN never counts as drift.
    pub fn is_drift(self, value: f64, threshold: f64) -> bool {
        if self.uses_p_value() {
            value < threshold
        } else {
            value >= threshold
        }
    }
}

// === impl Method ===

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| UnknownMethod(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for method in Method::ALL {
            assert_eq!(method.as_str().parse::<Method>(), Ok(method));
            assert_eq!(method.to_string(), method.as_str());
        }
        assert!("kl".parse::<Method>().is_err());
    }

    #[test]
    fn decisions_follow_the_kind_of_method() {
        assert!(Method::Ks.is_drift(0.01, 0.05));
        assert!(!Method::Ks.is_drift(0.05, 0.05));
        assert!(Method::Psi.is_drift(0.2, Method::Psi.default_threshold()));
        assert!(!Method::Psi.is_drift(0.19, 0.2));
        assert!(!Method::Psi.is_drift(f64::NAN, 0.2));
        assert!(!Method::ChiSquare.is_drift(f64::NAN, 0.05));
    }
}
