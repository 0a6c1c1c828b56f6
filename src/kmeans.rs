//! Codebook training by k-means (to be written).
