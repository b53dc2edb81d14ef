//! vigil evaluate stage (to be written)
