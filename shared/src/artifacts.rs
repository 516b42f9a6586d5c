//! Build artifacts: packaging (tar + zstd with a manifest) and the `ArtifactStore` trait (S3, local directory).
