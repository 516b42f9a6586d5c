//! The local runner: executes a `Plan` in process (`aphex run --local`).
