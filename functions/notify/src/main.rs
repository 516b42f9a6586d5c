//! The `notify` Lambda: wiring only.
fn main() {}
