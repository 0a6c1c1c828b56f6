// (assign.wgsl: being written)
