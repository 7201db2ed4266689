//! The norms (modL) the MLM loss of an entity's contexts is computed at, for the loss-vs-norm
//! curve ([`super::loss_vs_norm`]).

/// The norms the loss curve is computed at: 0.1 … 0.5 in steps of 0.1 (small models saturate
/// early), then 0.75 … 12 in steps of 0.25.
pub fn loss_norms() -> Vec<f32> {
    (1..=5)
        .map(|i| i as f32 * 0.1)
        .chain((3..=48).map(|i| i as f32 * 0.25))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_norms_rise_from_a_tenth_to_twelve() {
        let n = loss_norms();
        assert_eq!(n.len(), 51);
        assert!(n.windows(2).all(|w| w[0] < w[1]));
        assert!((n[0] - 0.1).abs() < 1e-6 && (n[4] - 0.5).abs() < 1e-6);
        assert_eq!((n[5], n[50]), (0.75, 12.0));
    }
}
