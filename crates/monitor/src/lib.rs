//! The per-container monitor's protocol and the engine's side of it.
