//! (being written)
pub fn restore(_engine: &std::sync::Arc<crate::Engine>) -> anyhow::Result<()> {
    Ok(())
}
