//! Drawing a `Plan` as Mermaid or DOT.
