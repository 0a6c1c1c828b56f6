//! What each host file assumes about its shader, in one checkable form.
//!
//! A host file copies numbers from its WGSL: constants it sizes dispatches
//! with, the workgroup size of each entry point, and the layout of the
//! uniform `Params` block it fills. Each stage lists them for every variant
//! it compiles (gathered by [`crate::backend::gpu::stages::contracts`]);
//! `tests/gpu/shader_contract.rs` parses those very
//! sources with naga and holds every entry against naga's constants, entry
//! points and type layout. Not public API: it exists for that test.

use crate::backend::gpu::specialize::ShaderValue;
use crate::error::Result;

/// One compiled shader variant and what the host assumes about it.
#[derive(Clone, Debug)]
pub struct ShaderContract {
    /// The variant, for messages (`"assign Wide u8=false"`).
    pub name: String,
    /// The file in `shaders/` it comes from, without `.wgsl`.
    pub file: &'static str,
    /// The WGSL the host compiles (after specialization).
    pub source: String,
    /// Module-scope constants and the value the host relies on.
    pub constants: Vec<(&'static str, ShaderValue)>,
    /// Every entry point, with the workgroup size the host dispatches for
    /// (`None`: the host's dispatch does not depend on it).
    pub entry_points: Vec<(&'static str, Option<[u32; 3]>)>,
    /// The Rust copy of the block bound as `var<uniform>`.
    pub uniform: UniformLayout,
}

impl ShaderContract {
    /// The two variants of a shader specialized by its input type alone
    /// (`U8_INPUT`: f32, or bytes packed four per word): `source` compiles
    /// one, `constants` are what the host assumes besides `U8_INPUT`.
    pub fn per_input_type(
        file: &'static str,
        source: impl Fn(bool) -> Result<String>,
        constants: &[(&'static str, ShaderValue)],
        entry_points: &[(&'static str, Option<[u32; 3]>)],
        uniform: UniformLayout,
    ) -> Result<Vec<ShaderContract>> {
        [false, true]
            .into_iter()
            .map(|u8_input| {
                let mut assumed = constants.to_vec();
                assumed.push(("U8_INPUT", u8_input.into()));
                Ok(ShaderContract {
                    name: format!("{file} u8={u8_input}"),
                    file,
                    source: source(u8_input)?,
                    constants: assumed,
                    entry_points: entry_points.to_vec(),
                    uniform: uniform.clone(),
                })
            })
            .collect()
    }
}

/// The layout of a `#[repr(C)]` struct written into a uniform buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniformLayout {
    /// The Rust type (and the WGSL struct's name).
    pub type_name: &'static str,
    /// `size_of` the Rust struct.
    pub size: usize,
    /// Every field, in declaration order.
    pub fields: Vec<UniformField>,
}

/// One field of a [`UniformLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniformField {
    /// The field's name; padding starts with `_`.
    pub name: &'static str,
    /// `offset_of` the field.
    pub offset: usize,
    /// `size_of` the field.
    pub size: usize,
    /// The field's Rust type (`u32`, `f32`, `[u32; 3]`).
    pub ty: &'static str,
}

impl UniformField {
    /// Whether the field only pads the struct to its size.
    pub fn is_padding(&self) -> bool {
        self.name.starts_with('_')
    }
}

/// The Rust type name of a value (for [`uniform_layout!`]).
#[doc(hidden)]
pub fn type_name_of<T>(_: &T) -> &'static str {
    std::any::type_name::<T>()
}

/// The [`UniformLayout`] of a `Pod` struct, its fields listed in order:
/// `uniform_layout!(Params { rows, dim, _pad })`. Listing a field that does
/// not exist fails to compile; leaving one out is caught by the test, since
/// a `Pod` struct has no padding and the field sizes must add up to its size.
macro_rules! uniform_layout {
    ($ty:ident { $($field:ident),* $(,)? }) => {{
        let zero: $ty = bytemuck::Zeroable::zeroed();
        $crate::backend::gpu::contract::UniformLayout {
            type_name: stringify!($ty),
            size: std::mem::size_of::<$ty>(),
            fields: vec![$(
                $crate::backend::gpu::contract::UniformField {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($ty, $field),
                    size: std::mem::size_of_val(&zero.$field),
                    ty: $crate::backend::gpu::contract::type_name_of(&zero.$field),
                }
            ),*],
        }
    }};
}
pub(crate) use uniform_layout;
