//! Which stages a chunk records, for which work: SPEC §10's routes as
//! data, which the runner ([`crate::backend::gpu::runner`]) executes for
//! every chunk.
//!
//! * hard assignment: assign (or the given labels) → stable sort by label →
//!   segmented sum → residual layout `(t, k, f)` → normalization;
//! * hard assignment with `rn`: the same, summing the unit residuals
//!   `(v − c)/‖v − c‖` instead of the rows (the centroid already taken
//!   off), `mass` dividing by the hard counts;
//! * soft assignment (NetVLAD): soft logits and softmax (`rn` folded into
//!   the weights) → per-image weighted sums → normalization, `mass`
//!   dividing by the soft counts;
//! * labels alone (assignment), and the k-means update's plain sums per
//!   label with counts (the hard route without subtracting the centroid).
//!
//! A route also fixes what the chunk planner sizes chunks by: the weighted
//! routes bind `rows × K` weights or `rows × F` unit residuals as well, so
//! they plan as if the descriptors were f32 and `max(F, K)` wide.

use crate::backend::Model;
use crate::backend::gpu::chunking::ChunkShape;
use crate::error::Result;
use crate::model::element::DType;
use crate::model::normalization::{Normalization, Step as NormStep};

/// What every chunk of a run computes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Nearest-centroid labels only.
    Assign,
    /// Hard assignment: sums of `v − c` per label (`subtract_centroid`),
    /// or of `v` (the k-means update).
    Hard {
        /// Sum residuals rather than rows.
        subtract_centroid: bool,
    },
    /// Hard assignment with `rn`: sums of unit residuals per label.
    HardUnit,
    /// Soft assignment from `W`, `b`: weighted sums of residuals per image.
    Soft {
        /// Weights divided by the residual norms (`rn`).
        rn: bool,
    },
}

/// One stage a chunk records, in [`Route::steps`] order.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Labels, sort keys and row indices (skipped when labels are given).
    Assign,
    /// The unit residual of every row against its label's centroid.
    UnitResidual,
    /// Soft weights and labels (largest weight).
    SoftLogits,
    /// Per-image weighted sums and soft counts.
    SoftAggregate,
    /// Stable sort of the keys by label.
    Sort,
    /// Segmented sums over the sorted rows (or unit residuals).
    Scan,
    /// The sums into the `(t, k, f)` layout, with counts.
    Residual,
}

/// One dispatch of the normalization after aggregation.
#[derive(Clone, Debug)]
pub(crate) enum Finish {
    /// `mass` by the soft counts.
    SoftMass,
    /// A run of other steps, for the normalize stage (`mass` by the hard
    /// counts among them).
    Steps(Normalization),
}

impl Route {
    /// The route that encodes `model`.
    pub(crate) fn encoding(model: &Model<'_>) -> Route {
        let rn = model.norm.residual_normalized();
        match (model.soft, rn) {
            (Some(_), rn) => Route::Soft { rn },
            (None, true) => Route::HardUnit,
            (None, false) => Route::Hard {
                subtract_centroid: true,
            },
        }
    }

    /// The stages a chunk records.
    pub(crate) fn steps(self) -> &'static [Step] {
        match self {
            Route::Assign => &[Step::Assign],
            Route::Hard { .. } => &[Step::Assign, Step::Sort, Step::Scan, Step::Residual],
            Route::HardUnit => &[
                Step::Assign,
                Step::UnitResidual,
                Step::Sort,
                Step::Scan,
                Step::Residual,
            ],
            Route::Soft { .. } => &[Step::SoftLogits, Step::SoftAggregate],
        }
    }

    /// Whether labels given with the batch replace the assignment (they
    /// cannot be given with soft assignment; assignment alone computes
    /// them).
    pub(crate) fn takes_given_labels(self) -> bool {
        matches!(self, Route::Hard { .. } | Route::HardUnit)
    }

    /// Whether chunks produce sums (every route but [`Route::Assign`]).
    pub(crate) fn aggregates(self) -> bool {
        self != Route::Assign
    }

    /// Whether the per-cluster counts are soft (f32 `Σ a`) rather than hard
    /// (u32).
    pub(crate) fn soft_counts(self) -> bool {
        matches!(self, Route::Soft { .. })
    }

    /// Whether the stages of soft assignment and `rn` are needed.
    pub(crate) fn weighted(self) -> bool {
        matches!(self, Route::HardUnit | Route::Soft { .. })
    }

    /// The shape the chunk planner sizes this route's chunks by, for
    /// descriptors of `dtype` against a `clusters × dim` codebook.
    pub(crate) fn plan_shape(self, dim: usize, clusters: usize, dtype: DType) -> ChunkShape {
        if self.weighted() {
            ChunkShape {
                dim: dim.max(clusters),
                clusters,
                dtype: DType::F32,
            }
        } else {
            ChunkShape {
                dim,
                clusters,
                dtype,
            }
        }
    }

    /// The normalization a chunk of whole images records after its sums:
    /// `norm`'s steps without `rn` (it acted already), cut at each `mass`
    /// when the counts are soft.
    pub(crate) fn finish(self, norm: &Normalization) -> Result<Vec<Finish>> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for &step in norm.steps() {
            match step {
                NormStep::ResidualNorm => {}
                NormStep::Mass if self.soft_counts() => {
                    if !pending.is_empty() {
                        out.push(Finish::Steps(Normalization::new(std::mem::take(
                            &mut pending,
                        ))?));
                    }
                    out.push(Finish::SoftMass);
                }
                other => pending.push(other),
            }
        }
        if !pending.is_empty() {
            out.push(Finish::Steps(Normalization::new(pending)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(finish: &[Finish]) -> Vec<String> {
        finish
            .iter()
            .map(|f| match f {
                Finish::SoftMass => "soft mass".to_string(),
                Finish::Steps(n) => n.to_string(),
            })
            .collect()
    }

    #[test]
    fn finish_drops_rn_and_cuts_at_soft_mass() {
        let norm: Normalization = "rn,ssr,mass,intra,l2".parse().unwrap();
        let soft = Route::Soft { rn: true };
        assert_eq!(
            names(&soft.finish(&norm).unwrap()),
            ["ssr", "soft mass", "intra,l2"]
        );
        assert_eq!(
            names(&Route::HardUnit.finish(&norm).unwrap()),
            ["ssr,mass,intra,l2"]
        );
        assert!(
            Route::Assign
                .finish(&"rn".parse().unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn weighted_routes_plan_as_wide_f32_rows() {
        let hard = Route::Hard {
            subtract_centroid: true,
        };
        assert_eq!(hard.plan_shape(16, 64, DType::U8).dim, 16);
        assert_eq!(hard.plan_shape(16, 64, DType::U8).dtype, DType::U8);
        for route in [Route::HardUnit, Route::Soft { rn: false }] {
            let shape = route.plan_shape(16, 64, DType::U8);
            assert_eq!((shape.dim, shape.dtype), (64, DType::F32));
        }
    }
}
