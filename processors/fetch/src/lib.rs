//! vigil fetch stage (to be written)
