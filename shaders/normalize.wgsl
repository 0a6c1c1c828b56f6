// (normalize.wgsl: being written)
