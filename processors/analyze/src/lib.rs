//! vigil analyze stage (to be written)
