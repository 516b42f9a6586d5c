//! Harnesses shared by the cross-crate integration tests in `tests/tests/`: fixture paths, the fake
//! Kubernetes API server, and (added by their owners) the moto launcher.

pub mod argo_run;
pub mod cluster;
pub mod deploy_support;
pub mod fake_kube;
pub mod moto;
pub mod parity;
pub mod pod_node;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `../shared/fixtures` beside the repository (CI lays a copy of shared/ there).
pub fn fixtures_dir() -> PathBuf {
    repo_root().parent().expect("the repository has a parent folder").join("shared").join("fixtures")
}
