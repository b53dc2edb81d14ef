//! ScyllaDB backend (to be written).
