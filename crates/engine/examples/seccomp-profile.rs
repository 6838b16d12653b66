//! Print the OCI `linux.seccomp` berthd gives a container with these bounding capabilities
//! (moby's default profile, filtered as moby does), for scripts/bench-runtime.sh:
//!
//!     cargo run -q -p berth-engine --example seccomp-profile -- CAP_KILL CAP_AUDIT_WRITE

use anyhow::Context;
use berth_engine::container::security::linux_seccomp;
use bollard_stubs::models::HostConfig;
use oci_spec::runtime::Capability;

fn main() -> anyhow::Result<()> {
    let caps = std::env::args()
        .skip(1)
        .map(|c| {
            serde_json::from_value::<Capability>(c.clone().into())
                .with_context(|| format!("unknown capability {c}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let seccomp = linux_seccomp(&HostConfig::default(), &caps)?
        .context("the default profile yields no seccomp")?;
    println!("{}", serde_json::to_string(&seccomp)?);
    Ok(())
}
