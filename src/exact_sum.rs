//! Order-independent sums of f32 values, so that a table merged from shards is byte-identical
//! to the single build (floating-point addition is not associative; integer addition is).
//!
//! Each value is rounded once to a multiple of 2^-96 (exact for |x| ≥ 2^-73, so for every
//! value a model produces in practice) and added as a 128-bit integer; the total is rounded
//! once to f32. The sum of the same values is the same bits in any order and over any split.

use anyhow::{bail, Result};

/// Fractional bits of the fixed-point representation.
const FRAC_BITS: i32 = 96;
/// Values (and sums) must stay below 2^30 in magnitude.
const LIMIT: f64 = (1u128 << 126) as f64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactSum(pub i128);

impl ExactSum {
    /// Adds `x`; refuses NaN, infinities and magnitudes of 2^30 or more (also for the sum).
    pub fn add(&mut self, x: f32) -> Result<()> {
        if !x.is_finite() {
            bail!("value {x} is not a finite number");
        }
        // Exact: x is an f32, and scaling by a power of two only moves the exponent.
        let scaled = (x as f64) * 2f64.powi(FRAC_BITS);
        if scaled.abs() >= LIMIT {
            bail!("value {x} is too large to sum (|x| must stay below 2^30)");
        }
        self.add_sum(ExactSum(scaled.round() as i128))
    }

    /// Adds another sum (overflow-checked).
    pub fn add_sum(&mut self, o: ExactSum) -> Result<()> {
        match self.0.checked_add(o.0) {
            Some(v) if (v as f64).abs() < LIMIT => {
                self.0 = v;
                Ok(())
            }
            _ => bail!("sum is too large (|sum| must stay below 2^30)"),
        }
    }

    /// The sum, rounded once to the nearest f32.
    pub fn to_f32(self) -> f32 {
        (self.0 as f32) * 2f32.powi(-FRAC_BITS)
    }

    pub fn to_f64(self) -> f64 {
        (self.0 as f64) * 2f64.powi(-FRAC_BITS)
    }

    /// Little-endian bytes (16 per sum), for files.
    pub fn to_le_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// Sums from little-endian bytes (16 per sum); `None` if the length is not a multiple of
    /// 16 or a value is outside the range [`ExactSum::add`] produces.
    pub fn from_le_bytes(b: &[u8]) -> Option<Vec<ExactSum>> {
        if !b.len().is_multiple_of(16) {
            return None;
        }
        b.chunks_exact(16)
            .map(|c| {
                let v = i128::from_le_bytes(c.try_into().ok()?);
                ((v as f64).abs() < LIMIT).then_some(ExactSum(v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_order_and_split_gives_the_same_bits() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let m = (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            m * 10f32.powi((rng % 9) as i32 - 4)
        };
        let xs: Vec<f32> = (0..1000).map(|_| next()).collect();
        let mut fwd = ExactSum::default();
        xs.iter().for_each(|&x| fwd.add(x).unwrap());
        let mut rev = ExactSum::default();
        xs.iter().rev().for_each(|&x| rev.add(x).unwrap());
        let (mut even, mut odd) = (ExactSum::default(), ExactSum::default());
        for (i, &x) in xs.iter().enumerate() {
            if i % 2 == 0 {
                even.add(x).unwrap()
            } else {
                odd.add(x).unwrap()
            }
        }
        even.add_sum(odd).unwrap();
        assert_eq!(fwd, rev);
        assert_eq!(fwd, even);
        let f64_sum: f64 = xs.iter().map(|&x| x as f64).sum();
        assert!((fwd.to_f64() - f64_sum).abs() < 1e-9);
    }

    #[test]
    fn refuses_non_finite_and_huge_values() {
        let mut s = ExactSum::default();
        assert!(s.add(f32::NAN).is_err());
        assert!(s.add(f32::INFINITY).is_err());
        assert!(s.add(2e9).is_err());
        s.add(1e9).unwrap();
        assert!(s.add(1e9).is_err(), "the sum overflows the range");
        assert_eq!(ExactSum::from_le_bytes(&[0; 15]), None);
        assert_eq!(
            ExactSum::from_le_bytes(&[0xff; 16]).unwrap(),
            vec![ExactSum(-1)]
        );
        let mut huge = [0u8; 16];
        huge[15] = 0x7f;
        assert_eq!(ExactSum::from_le_bytes(&huge), None);
    }
}
