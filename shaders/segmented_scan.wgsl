// (segmented_scan.wgsl: being written)
