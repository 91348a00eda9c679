//! BGP EVPN (RFC 7432, RFC 8365): an edge beside `io`, `plugin` and `control`, that speaks to a
//! BGP speaker (GoBGP) and tells the pipeline what the routes say through `Vtep`'s
//! control-plane interface. [`mobility`] decides where a MAC is when several VTEPs announce it
//! (pure, tested alone).

pub mod mobility;
