//! vigil feeds stage (to be written)
