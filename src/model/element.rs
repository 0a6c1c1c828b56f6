//! The descriptor element types SPEC §2 accepts: `f32`, `f64` and `u8`.
//! Arithmetic is f32 everywhere; this trait is how each backend widens or
//! narrows an element without first copying the whole input.

/// Which of the accepted element types an array holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    U8,
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::U8 => "u8",
        })
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u8 {}
}

/// A descriptor element: `f32`, `f64` or `u8`. Sealed: these three only.
pub trait Element:
    Copy + Send + Sync + Default + bytemuck::Pod + std::fmt::Debug + sealed::Sealed + 'static
{
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Convert to the f32 every backend computes in (f64 rounds to nearest).
    fn to_f32(self) -> f32;
    /// Convert to f64 (exact for all three types).
    fn to_f64(self) -> f64;
    /// `false` for NaN and ±Inf; always `true` for `u8`.
    fn is_finite(self) -> bool;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        // A finite f64 beyond f32's range would become ±Inf in f32 arithmetic.
        f64::is_finite(self) && (self as f32).is_finite()
    }
}

impl Element for u8 {
    const DTYPE: DType = DType::U8;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        true
    }
}
