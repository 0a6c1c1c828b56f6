//! The nouns a user builds and reads: the codebook, how descriptors are
//! assigned, the normalization, the input batch and its element types, and
//! the report of what ran.

pub mod assignment;
pub mod batch;
pub mod choice;
pub mod codebook;
pub mod element;
pub mod normalization;
pub mod offset;
pub mod report;
