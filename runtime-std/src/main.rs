//! The `hato` binary: blocking threads, for low-end hardware.

fn main() {}
