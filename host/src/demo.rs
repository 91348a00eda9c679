//! `vtep demo` (next commit).

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
