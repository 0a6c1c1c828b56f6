//! `vlad bench --dtype`: the element type of the synthetic descriptors.
//! The same seeded data in each type, so runs of the three compare: u8
//! quantized as SIFT descriptors are, f16 rounded to half precision.

use std::fmt;

use ndarray::Array3;

/// Element type of the benchmark's descriptors.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BenchDtype {
    /// 32-bit floats (the default).
    F32,
    /// 16-bit floats. The library has no f16 input array yet (SPEC §2; it
    /// is another branch's work), so the values, rounded to f16, are
    /// widened to f32 on the host and moved as f32: the bytes uploaded are
    /// f32's until that lands, and the report says so.
    F16,
    /// Bytes, uploaded as bytes and widened on the device.
    U8,
}

impl BenchDtype {
    /// All, in the order the command line lists them.
    pub const ALL: [BenchDtype; 3] = [BenchDtype::U8, BenchDtype::F16, BenchDtype::F32];

    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            BenchDtype::F32 => "f32",
            BenchDtype::F16 => "f16",
            BenchDtype::U8 => "u8",
        }
    }

    /// Parse a command-line name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether an input of this type is widened on the host (and moved as
    /// f32) rather than uploaded in its own width.
    pub fn widened_on_host(self) -> bool {
        self == BenchDtype::F16
    }

    /// The synthetic f32 data (values in about `[−0.3, 1.3]`) as values of
    /// this type, still held in f32: u8 as `round(200·x + 28)` clamped to
    /// `0..=255` (every value an integer), f16 rounded to the nearest f16.
    pub fn represent(self, data: Array3<f32>) -> Array3<f32> {
        match self {
            BenchDtype::F32 => data,
            BenchDtype::U8 => data.mapv(|x| (200.0 * x + 28.0).round().clamp(0.0, 255.0)),
            BenchDtype::F16 => data.mapv(round_to_f16),
        }
    }
}

impl fmt::Display for BenchDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `x` rounded to the nearest f16 (ties to even), as an f32: 11 significant
/// bits in f16's normal range, zero below it (these data have no use for
/// f16 subnormals), ±65504 at most.
pub fn round_to_f16(x: f32) -> f32 {
    const SMALLEST_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    const LARGEST: f32 = 65504.0;
    if !x.is_finite() || x.abs() < SMALLEST_NORMAL {
        return if x.is_nan() { x } else { 0.0f32.copysign(x) };
    }
    let bits = x.to_bits();
    // Drop 13 of f32's 23 fraction bits, rounding to nearest, ties to even.
    let keep_odd = (bits >> 13) & 1;
    let rounded = f32::from_bits((bits + 0x0FFF + keep_odd) & !0x1FFF);
    rounded.clamp(-LARGEST, LARGEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in BenchDtype::ALL {
            assert_eq!(BenchDtype::parse(d.name()), Some(d));
        }
        assert_eq!(BenchDtype::parse("f64"), None);
    }

    #[test]
    fn f16_rounding_keeps_eleven_bits() {
        assert_eq!(round_to_f16(1.0), 1.0);
        // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even, 1.
        assert_eq!(round_to_f16(1.0 + 2f32.powi(-11)), 1.0);
        // 1 + 3·2^-11 is a tie between 1 + 2^-10 and 1 + 2^-9: to even.
        assert_eq!(
            round_to_f16(1.0 + 3.0 * 2f32.powi(-11)),
            1.0 + 2f32.powi(-9)
        );
        assert_eq!(round_to_f16(0.1), 0.099_975_586);
        assert_eq!(round_to_f16(1e-6), 0.0);
        assert_eq!(round_to_f16(1e6), 65504.0);
    }

    #[test]
    fn u8_values_are_integers_in_range() {
        let data = Array3::from_shape_vec((1, 1, 4), vec![-1.0, 0.0, 0.5, 2.0]).unwrap();
        let u8s = BenchDtype::U8.represent(data);
        assert_eq!(u8s.as_slice().unwrap(), &[0.0, 28.0, 128.0, 255.0]);
    }
}
