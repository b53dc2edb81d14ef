//! vigil match stage (to be written)
