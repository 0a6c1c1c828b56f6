// (residual.wgsl: being written)
