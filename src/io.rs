//! Reading and writing `.npy` files (to be written).
