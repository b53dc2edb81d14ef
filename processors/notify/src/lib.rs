//! vigil notify stage (to be written)
