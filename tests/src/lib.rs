//! Network test harness for wasm-vtep: hosts, VMs and an underlay switch built from network
//! namespaces, veth pairs and Linux bridges; every piece is torn down when its guard drops.

pub mod netns;

pub use netns::Netns;
