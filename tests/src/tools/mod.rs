//! Wrappers around the command-line tools a test uses to look at the network — `ping`,
//! `bridge fdb`, `tcpdump`, `iperf3`, `nstat` — each run inside a namespace, each returning
//! parsed results rather than text to grep; plus the benchmark's own instruments: a UDP flood
//! generator and sink ([`flood`]) and CPU time from `/proc` ([`cpu`]).

pub mod capture;
pub mod cpu;
pub mod fdb;
pub mod flood;
pub mod iperf;
pub mod nstat;
pub mod pcap;
pub mod ping;
pub mod raw_frame;
pub mod vxlan_view;
