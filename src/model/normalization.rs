//! The ordered list of normalization steps applied to each image's encoding
//! after aggregation (SPEC §3).

use std::fmt;
use std::str::FromStr;

use crate::error::VladError;

/// One normalization step.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// Residual normalization (SPEC §10): each residual `v − c_k` scaled to
    /// unit length before it is weighted and summed (a zero residual stays
    /// zero). Applied during aggregation, so only allowed first.
    ResidualNorm,
    /// Divide each block by its descriptor count `n_{t,k}` where `n > 0`.
    Mass,
    /// Signed power `sign(x)·|x|^α`, elementwise (`ssr` is α = 0.5).
    Power(f32),
    /// L2-normalize each `F`-wide block on its own.
    Intra,
    /// L2-normalize the whole `K·F` row.
    L2,
}

/// An ordered list of [`Step`]s; empty means raw sums (`"none"`).
///
/// Parses and prints the command line's syntax:
///
/// ```
/// use vlad::{Normalization, Step};
///
/// let norm: Normalization = "power=0.3,intra,l2".parse()?;
/// assert_eq!(norm.steps(), &[Step::Power(0.3), Step::Intra, Step::L2]);
/// assert_eq!(norm.to_string(), "power=0.3,intra,l2");
/// assert_eq!(Normalization::default().to_string(), "ssr,l2");
/// assert_eq!("none".parse::<Normalization>()?.steps(), &[]);
/// # Ok::<(), vlad::VladError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    steps: Vec<Step>,
}

impl Normalization {
    /// The given steps, applied in order.
    pub fn new(steps: Vec<Step>) -> Result<Self, VladError> {
        if let Some(i) = steps.iter().skip(1).position(|s| *s == Step::ResidualNorm) {
            return Err(VladError::InvalidArgument(format!(
                "normalization step rn is only allowed first (it acts on residuals before they are summed), found at position {}",
                i + 2
            )));
        }
        for step in &steps {
            if let Step::Power(alpha) = step
                && !(alpha.is_finite() && *alpha > 0.0)
            {
                return Err(VladError::InvalidArgument(format!(
                    "power exponent must be a finite number > 0, got {alpha}"
                )));
            }
        }
        Ok(Normalization { steps })
    }

    /// No normalization: the raw residual sums.
    pub fn none() -> Self {
        Normalization { steps: Vec::new() }
    }

    /// The steps in the order they are applied.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether residuals are L2-normalized before summing (`rn` first).
    pub fn residual_normalized(&self) -> bool {
        self.steps.first() == Some(&Step::ResidualNorm)
    }

    /// Whether any step needs the per-block counts (`mass`).
    pub fn needs_counts(&self) -> bool {
        self.steps.contains(&Step::Mass)
    }

    /// Whether the list ends in a step that bounds the output (SPEC §4's
    /// absolute tolerance applies after `l2` or `intra`).
    pub fn ends_normalized(&self) -> bool {
        matches!(self.steps.last(), Some(Step::L2 | Step::Intra))
    }
}

impl Default for Normalization {
    /// `ssr,l2`: signed square root, then global L2 (the numpy reference).
    fn default() -> Self {
        Normalization {
            steps: vec![Step::Power(0.5), Step::L2],
        }
    }
}

impl FromStr for Normalization {
    type Err = VladError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") || s.is_empty() {
            return Ok(Normalization::none());
        }
        let mut steps = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let lower = part.to_ascii_lowercase();
            let step = match lower.as_str() {
                "rn" => Step::ResidualNorm,
                "mass" => Step::Mass,
                "ssr" => Step::Power(0.5),
                "intra" => Step::Intra,
                "l2" => Step::L2,
                "none" => {
                    return Err(VladError::InvalidArgument(format!(
                        "normalization {s:?}: 'none' cannot be combined with other steps"
                    )));
                }
                _ => match lower.strip_prefix("power=") {
                    Some(alpha) => Step::Power(alpha.trim().parse::<f32>().map_err(|_| {
                        VladError::InvalidArgument(format!(
                            "normalization step {part:?}: exponent is not a number"
                        ))
                    })?),
                    None => {
                        return Err(VladError::InvalidArgument(format!(
                            "unknown normalization step {part:?}: expected rn, mass, ssr, power=α, intra, l2 or none"
                        )));
                    }
                },
            };
            steps.push(step);
        }
        Normalization::new(steps)
    }
}

impl fmt::Display for Normalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str("none");
        }
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match step {
                Step::ResidualNorm => f.write_str("rn")?,
                Step::Mass => f.write_str("mass")?,
                Step::Power(a) if *a == 0.5 => f.write_str("ssr")?,
                Step::Power(a) => write!(f, "power={a}")?,
                Step::Intra => f.write_str("intra")?,
                Step::L2 => f.write_str("l2")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        for s in [
            "ssr,l2",
            "power=0.3,intra,l2",
            "mass",
            "none",
            "mass,ssr,intra,l2",
            "rn,ssr,l2",
            "rn",
            "rn,mass,intra,l2",
        ] {
            let n: Normalization = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        assert_eq!(
            "power=0.5".parse::<Normalization>().unwrap().to_string(),
            "ssr"
        );
        for bad in [
            "l3",
            "power=",
            "power=-1",
            "power=nan",
            "none,l2",
            "ssr,,l2",
            "ssr,rn",
            "rn,rn",
            "l2,rn,intra",
        ] {
            assert!(bad.parse::<Normalization>().is_err(), "{bad} should fail");
        }
    }
}
