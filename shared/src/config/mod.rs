//! `aphex-config.yaml`: the model, parsing with source positions, and validation into diagnostics.

pub mod model;

pub use model::*;
