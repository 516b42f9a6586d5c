//! AphexPipeline's domain logic. Pure core (config, plan, rendering, signature checks, event parsing)
//! and the capability traits whose I/O adapters sit at the edges. No Lambda or clap types live here.

pub mod config;

pub mod argo;
pub mod graph;
pub mod plan;
pub mod template;

pub mod cluster;
pub mod webhook;

pub mod assembly;
pub mod bootstrap;
pub mod deploy;
pub mod synth;

pub mod artifacts;
pub mod aws;
pub mod runner;
pub mod steps;

pub mod notify;
pub mod telemetry;

pub mod yaml_out;

#[cfg(test)]
mod field_walk;
