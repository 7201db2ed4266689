//! PELT Workbench engine: build, inspect and export Pluggable Entity Lookup Tables (Ye et al.,
//! ACL 2022) for masked language models. This library knows nothing of the GUI; the `pelt`
//! binary puts a command line and an egui front end on top of it.
//!
//! Layers (each imports only from the layers before it, never back):
//! 1. `escape`, `outpath` (which outputs are refused) → `io` (atomic writes), `exact_sum`,
//!    `progress`, `model` (with `model::hub`, the Hugging Face cache, and `model::cpu`, the
//!    CPU kernels);
//! 2. `corpus` → `entities` → `table` (the table types, `ContextRecord` included);
//! 3. `contexts`, `rewrite`, `analysis`;
//! 4. `build`, `eval` → `project` (a project holds build options and evaluation settings);
//! 5. `worker`.
//!
//! The front ends (the `pelt` command line with its benchmark, and the egui window) are
//! modules of the binary, not of this library.

pub mod analysis;
pub mod build;
pub mod contexts;
pub mod corpus;
pub mod entities;
pub mod escape;
pub mod eval;
pub mod exact_sum;
pub mod io;
pub mod model;
pub mod outpath;
pub mod progress;
pub mod project;
pub mod rewrite;
pub mod table;
pub mod worker;
