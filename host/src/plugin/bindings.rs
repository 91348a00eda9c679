//! The Rust side of the plugin interface, one module per interface version this host speaks,
//! each generated from that version's WIT (the files the SDK's guest bindings come from too):
//! [`v0_2`] from `plugin-sdk/wit` (the current one), [`v0_1`] from the frozen
//! `plugin-sdk/wit-0.1.0`. The host works in the current version's types, re-exported here;
//! `adapt` translates at the boundary for plugins built for an older one (zed's model).

// Generated code: its items are as public as the macro makes them.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

/// Interface 0.2.0: the current one.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "plugin",
    });
}

/// Interface 0.1.0: frame metadata without DSCP, TCP flags, ICMP and ARP.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit-0.1.0",
        world: "plugin",
    });
}

pub(crate) use v0_2::*;

/// The interface a plugin exports, without its version: what the host calls.
pub(crate) const HOOKS_INTERFACE: &str = "wasm-vtep:plugin/hooks";

/// An interface version this host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V0_1,
    V0_2,
}

impl Version {
    /// Every version spoken, oldest first.
    pub(crate) const ALL: [Version; 2] = [Version::V0_1, Version::V0_2];

    /// As the WIT's `package` line and a component's export names spell it.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Version::V0_1 => "0.1.0",
            Version::V0_2 => "0.2.0",
        }
    }

    /// The version spelled `s`, if this host speaks it.
    pub(crate) fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn versions_are_the_wits() {
        for (version, wit) in [
            (
                Version::V0_2,
                include_str!("../../../plugin-sdk/wit/plugin.wit"),
            ),
            (
                Version::V0_1,
                include_str!("../../../plugin-sdk/wit-0.1.0/plugin.wit"),
            ),
        ] {
            let package = format!("package wasm-vtep:plugin@{};", version.as_str());
            assert!(
                wit.lines().any(|l| l == package),
                "{package} not in the WIT"
            );
            assert_eq!(Version::parse(version.as_str()), Some(version));
        }
        assert_eq!(Version::parse("0.3.0"), None);
    }
}
