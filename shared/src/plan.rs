//! The pipeline plan: a pure function from a validated config to ordered stages (no Argo in it).
