//! Whitening rows that are already on the host (SPEC §14): the pieces of a
//! split image finished on the host, and any call whose encoding was not
//! whitened on the device. The rows go up, the `whiten` stage projects
//! them, `T × D′` values come back, and the host applies the post
//! normalization. Rows are cut into passes that fit one storage binding;
//! a row's bits do not depend on the pass it is in.

use crate::backend::compute::check_out_len;
use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::stages::whiten::{ProjectionGroups, WhitenStage};
use crate::error::{Result, VladError};
use crate::whitening::Whitening;

/// Whiten `rows` (`n × D`) into `out` (`n × D′`) on the device, with
/// `w`'s matrices already uploaded (`projection`: a run whitening many
/// rows uploads them once).
pub(crate) fn whiten_rows(
    ctx: &GpuContext,
    stage: &WhitenStage,
    w: &Whitening,
    projection: &ProjectionGroups,
    rows: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let (dim, dout) = (w.dims_in(), w.dims_out());
    let n = rows.len() / dim;
    check_out_len(out, n * dout)?;
    if n == 0 {
        return Ok(());
    }
    let width = projection.width as usize;
    let max = ctx.max_binding_bytes() as usize;
    let per_pass = (max / (dim * 4))
        .min(max / (width * 4))
        .min(u32::MAX as usize);
    if per_pass == 0 {
        return Err(VladError::Unsupported {
            path: "whitening".into(),
            message: format!(
                "one row of D = {dim} values is larger than a storage binding ({max} bytes)"
            ),
        });
    }
    for (pass, (x, o)) in rows
        .chunks(per_pass * dim)
        .zip(out.chunks_mut(per_pass * dout))
        .enumerate()
    {
        let count = x.len() / dim;
        let input = ctx.upload("whiten rows", x)?;
        let projected = ctx.storage_buffer("whitened rows", (count * width * 4) as u64)?;
        let mut encoder = ctx.encoder("whiten");
        stage.record(
            ctx,
            &mut encoder,
            projection,
            &input,
            count as u32,
            &projected,
        )?;
        ctx.submit_and_wait(&format!("whiten pass {pass}"), encoder)?;
        let back: Vec<f32> = ctx.read_back("whitened rows", &projected, 0, count * width)?;
        for (o, y) in o.chunks_exact_mut(dout).zip(back.chunks_exact(width)) {
            o.copy_from_slice(&y[..dout]);
            w.post_normalize_row(o);
        }
    }
    Ok(())
}
