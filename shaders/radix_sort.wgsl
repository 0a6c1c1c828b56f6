// (radix_sort.wgsl: being written)
