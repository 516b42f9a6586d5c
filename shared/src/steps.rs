//! The pipeline steps Argo pods run (`aphex step ...`), shared with the local runner.
