//! The wgpu backend (to be written).
