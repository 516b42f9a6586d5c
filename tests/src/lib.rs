//! Shared helpers for the cross-crate integration tests in `tests/tests/`: fixture paths, moto, the fake Kubernetes API server.
