//! Uniform buffers and bind groups kept between calls, keyed by what they
//! hold: a stage that records the same shape against the same (pooled)
//! buffers gets the objects it made last time, with no allocation and no
//! error scope.
//!
//! A chunk records 12–24 such small objects; made afresh, each costs a pair
//! of error scopes (two blocking pops), and at small shapes that host setup
//! is a visible part of a call. Uniform buffers are never written after they are
//! made, so one holding given bytes can serve every dispatch that needs
//! those bytes; a bind group is immutable and names its pipeline and
//! buffers, so it can be reused whenever those are the same objects.
//!
//! A cached bind group keeps its buffers alive. So that a buffer a pool has
//! replaced by a larger one is freed, [`BindCache::forget`] drops every
//! cached bind group; the context calls it whenever it allocates a storage
//! buffer (which is when pools grow). Both maps are also bounded: past
//! [`MAX_ENTRIES`] one is emptied before the next insertion.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

/// Entries each map holds at most before it is emptied.
pub const MAX_ENTRIES: usize = 1024;

/// One binding of a cached bind group: its number and the buffer range.
type Entry = (u32, wgpu::Buffer, u64, Option<NonZeroU64>);

/// What identifies a bind group: the pipeline (its layout) and the
/// bindings, by object identity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BindKey {
    pipeline: wgpu::ComputePipeline,
    entries: Vec<Entry>,
}

impl BindKey {
    /// The key of binding `entries` for `pipeline`, or `None` when an entry
    /// is not a buffer (those are not cached).
    pub fn new(
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, wgpu::BindingResource<'_>)],
    ) -> Option<BindKey> {
        let entries = entries
            .iter()
            .map(|(binding, resource)| match resource {
                wgpu::BindingResource::Buffer(b) => {
                    Some((*binding, b.buffer.clone(), b.offset, b.size))
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(BindKey {
            pipeline: pipeline.clone(),
            entries,
        })
    }
}

/// The cache a [`GpuContext`](crate::backend::gpu::GpuContext) keeps.
#[derive(Default)]
pub struct BindCache {
    uniforms: Mutex<HashMap<Vec<u8>, wgpu::Buffer>>,
    groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    made: Mutex<Counts>,
}

/// How many objects the cache made and handed out again.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Uniform buffers and bind groups made.
    pub made: u64,
    /// Requests served from the cache.
    pub reused: u64,
}

impl BindCache {
    /// The uniform buffer holding `bytes`, if one was made.
    pub fn uniform(&self, bytes: &[u8]) -> Option<wgpu::Buffer> {
        let found = self.uniforms.lock().ok()?.get(bytes).cloned();
        self.count(found.is_some());
        found
    }

    /// Remember `buffer` as the uniform holding `bytes`.
    pub fn keep_uniform(&self, bytes: &[u8], buffer: &wgpu::Buffer) {
        if let Ok(mut map) = self.uniforms.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(bytes.to_vec(), buffer.clone());
        }
    }

    /// The bind group made for `key`, if any.
    pub fn group(&self, key: &BindKey) -> Option<wgpu::BindGroup> {
        let found = self.groups.lock().ok()?.get(key).cloned();
        self.count(found.is_some());
        found
    }

    /// Remember `group` as the bind group for `key`.
    pub fn keep_group(&self, key: BindKey, group: &wgpu::BindGroup) {
        if let Ok(mut map) = self.groups.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, group.clone());
        }
    }

    /// Drop every cached bind group (and so its hold on its buffers).
    pub fn forget(&self) {
        if let Ok(mut map) = self.groups.lock() {
            map.clear();
        }
    }

    /// Objects made and reused so far.
    pub fn counts(&self) -> Counts {
        self.made.lock().map(|c| *c).unwrap_or_default()
    }

    fn count(&self, reused: bool) {
        if let Ok(mut c) = self.made.lock() {
            if reused {
                c.reused += 1;
            } else {
                c.made += 1;
            }
        }
    }
}
