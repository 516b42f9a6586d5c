//! The `validate-config` Lambda: wiring only.
fn main() {}
