//! (being written)
#[derive(Default)]
pub struct ExecStore;
