//! Drawing the random splits of Half-Space Trees, in River's order
//! (`river.tree.padded.make_padded_tree`).

use super::PADDING;
use crate::detect::anomaly::AnomalyError;

/// Checks one `(low, high)` range per axis: finite, `low ≤ high`, and at
/// least one range wider than zero.
pub(super) fn check_limits(limits: &[(f64, f64)]) -> Result<(), AnomalyError> {
    if limits.is_empty() {
        return Err(AnomalyError::Baseline {
            detector: "half_space_trees",
            why: "there are no numeric features".to_owned(),
        });
    }
    if u32::try_from(limits.len()).is_err() {
        return Err(AnomalyError::Config("too many numeric features".to_owned()));
    }
    for &(low, high) in limits {
        if !(low.is_finite() && high.is_finite()) {
            return Err(AnomalyError::NonFinite {
                what: "half-space tree limits",
            });
        }
        if low > high {
            return Err(AnomalyError::Config(format!(
                "half-space tree limits ({low}, {high}) are reversed"
            )));
        }
    }
    if limits.iter().all(|&(low, high)| high - low <= 0.0) {
        return Err(AnomalyError::Baseline {
            detector: "half_space_trees",
            why: "every numeric feature is constant, so there is nothing to split".to_owned(),
        });
    }
    Ok(())
}

/// The split axis and split point of every internal node of `trees`
/// trees of `height`, tree after tree, each tree's nodes in heap order.
///
/// Nodes are visited depth first, left before right, as River builds
/// them, and each consumes two draws from `uniform`: the axis (weighted by
/// the width of each axis's current range, as `random.choices`) and the
/// split point (`random.uniform` over the range without its padding).
/// Each child then sees its side of the split as that axis's range.
pub(super) fn splits(
    trees: usize,
    height: usize,
    limits: &[(f64, f64)],
    mut uniform: impl FnMut() -> f64,
) -> (Vec<u32>, Vec<f64>) {
    let internal = (1usize << height) - 1;
    let mut axes = vec![0u32; trees * internal];
    let mut at = vec![0.0; trees * internal];
    let mut ranges = limits.to_vec();
    for tree in 0..trees {
        let span = tree * internal..(tree + 1) * internal;
        let mut builder = Builder {
            axes: &mut axes[span.clone()],
            at: &mut at[span],
            ranges: &mut ranges,
            uniform: &mut uniform,
        };
        builder.node(0, height);
    }
    (axes, at)
}

/// One tree's splits being drawn.
struct Builder<'a, U> {
    axes: &'a mut [u32],
    at: &'a mut [f64],
    /// Each axis's range at the current node; restored on the way back up.
    ranges: &'a mut [(f64, f64)],
    uniform: &'a mut U,
}

impl<U: FnMut() -> f64> Builder<'_, U> {
    /// Draws the split of `node` and, recursively, of its `levels − 1`
    /// levels of descendants. A node with no levels below is a leaf.
    fn node(&mut self, node: usize, levels: usize) {
        if levels == 0 {
            return;
        }
        let axis = self.pick_axis();
        let (low, high) = self.ranges[axis];
        let from = low + PADDING * (high - low);
        let to = high - PADDING * (high - low);
        let split = from + (to - from) * (self.uniform)();
        self.axes[node] = axis as u32;
        self.at[node] = split;

        self.ranges[axis] = (low, split);
        self.node(2 * node + 1, levels - 1);
        self.ranges[axis] = (split, high);
        self.node(2 * node + 2, levels - 1);
        self.ranges[axis] = (low, high);
    }

    /// An axis drawn with probability proportional to its range's width,
    /// exactly as Python's `random.choices(axes, weights=widths)`: the
    /// first axis whose cumulative width exceeds `u · total`.
    fn pick_axis(&mut self) -> usize {
        let total: f64 = self
            .ranges
            .iter()
            .fold(0.0, |sum, &(low, high)| sum + (high - low));
        let target = (self.uniform)() * total;
        let last = self.ranges.len() - 1;
        let mut cumulative = 0.0;
        for (axis, &(low, high)) in self.ranges[..last].iter().enumerate() {
            cumulative += high - low;
            if cumulative > target {
                return axis;
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_stay_inside_padded_ranges_and_skip_constant_axes() {
        let limits = [(0.0, 1.0), (5.0, 5.0), (-10.0, 10.0)];
        let mut rng = fastrand::Rng::with_seed(7);
        let (axes, at) = splits(3, 4, &limits, || rng.f64());
        assert_eq!(axes.len(), 3 * 15);
        for (&axis, &split) in axes.iter().zip(&at) {
            assert_ne!(axis, 1, "a zero-width axis is never split");
            let (low, high) = limits[axis as usize];
            assert!(split > low && split < high);
        }
        assert!(check_limits(&[(5.0, 5.0)]).is_err());
        assert!(check_limits(&[(1.0, 0.0)]).is_err());
        assert!(check_limits(&[(0.0, f64::INFINITY)]).is_err());
        assert!(check_limits(&[]).is_err());
    }
}
