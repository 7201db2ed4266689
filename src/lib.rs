//! PELT Workbench engine: build, inspect and export Pluggable Entity Lookup Tables (Ye et al.,
//! ACL 2022) for masked language models. This library knows nothing of the GUI; the `pelt`
//! binary puts a command line and an egui front end on top of it.
//!
//! Layers (imports flow downward): `model`, `corpus`, `entities`, `table`, `progress`,
//! `project` → `contexts`, `rewrite`, `analysis` → `build` → `worker`, `cli`.

pub mod analysis;
pub mod bench;
pub mod build;
pub mod cli;
pub mod contexts;
pub mod corpus;
pub mod entities;
pub mod eval;
pub mod escape;
pub mod exact_sum;
pub mod model;
pub mod outpath;
pub mod progress;
pub mod project;
pub mod rewrite;
pub mod table;
pub mod worker;
