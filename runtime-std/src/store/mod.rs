//! Everything hato writes to disk under `data_dir` (DESIGN.md §4).
