//! vigil extract stage (to be written)
