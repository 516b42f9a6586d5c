//! Just-in-time synthesis: runs the user's synth command into a fresh output directory.
