//! The `hato-smol` binary: async, for many connections.

fn main() {}
