//! Unit tests of config checking: one fault per case, the exact diagnostic expected.
