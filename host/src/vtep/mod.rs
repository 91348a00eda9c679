//! The VTEP core: the sans-IO flood-and-learn pipeline of RFC 7348 §4.
//!
//! It takes frames from local ports and datagrams from the underlay, each with an explicit `now`,
//! and writes what must be sent into an [`Outbox`]; it never touches a socket or a clock.

mod outbox;
mod settings;

pub use outbox::{Dest, OutFrame, Outbox};
pub use settings::{
    DEFAULT_AGING, DEFAULT_DST_PORT, DEFAULT_MAX_ENTRIES, DEFAULT_MTU, DEFAULT_SRC_PORTS,
    DEFAULT_TTL, Location, PortId, StaticEntry, VniSettings, VtepSettings,
};
