//! The quantities people type on `slicectl`'s command line (CPU, sizes, durations) and how they
//! are shown back. They live in `slicebed-units`, shared with node-manager, so that both programs
//! accept and print the same forms; this module only keeps the `crate::quantity::` paths.

pub use slicebed_units::*;
