//! A wasm-vtep plugin: drops ARP frames decapsulated from VTEPs not in its `trusted` list, and
//! counts them. Start here: `init` reads the configuration, `filter` decides per frame, and
//! `export_plugin!` registers the type (the hook traits it implements are the hooks the host
//! calls).

use std::net::IpAddr;

use serde::Deserialize;
use wasm_vtep_plugin_sdk::{
    Counter, Direction, Filter, FilterResult, FrameMeta, Location, Plugin, Value, export_plugin,
    from_config,
};

/// The ethertype of ARP.
const ARP: u16 = 0x0806;
/// The drop reason `vtep plugin show` counts these drops under.
const UNTRUSTED_ARP: u16 = 1;

/// The `config` table of the plugin's `[[plugin]]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The VTEPs whose ARP frames pass.
    #[serde(default)]
    trusted: Vec<IpAddr>,
}

/// The plugin's state: one per instance (each data path worker calls its own).
pub struct NoArpFromRemotes {
    trusted: Vec<IpAddr>,
    dropped: Counter,
}

impl Plugin for NoArpFromRemotes {
    fn init(config: &Value) -> Result<Self, String> {
        // Errors name the field ("config.trusted[0]: ..."): return them as they are.
        let config: Config = from_config(config)?;
        Ok(NoArpFromRemotes {
            trusted: config.trusted,
            dropped: Counter::new("dropped"),
        })
    }
}

/// The hooks a plugin answers are the traits it implements (`Filter`, `Learn`, `Age`); the
/// host never calls the others.
impl Filter for NoArpFromRemotes {
    fn filter(&mut self, frames: &[FrameMeta]) -> Vec<FilterResult> {
        frames
            .iter()
            .map(|f| {
                let untrusted = match f.source {
                    Location::Remote(ip) => !self.trusted.contains(&ip),
                    Location::Port(_) => false,
                };
                // A pass depends on the frame's metadata alone: the host may reuse it for the
                // flow's next frames for 10 s without calling the plugin. A drop is not
                // cached, so that the plugin sees, and its counter counts, every one.
                if f.direction == Direction::FromUnderlay && f.ethertype == ARP && untrusted {
                    self.dropped.inc();
                    FilterResult::drop(UNTRUSTED_ARP)
                } else {
                    FilterResult::pass().cache_for(10)
                }
            })
            .collect()
    }
}

export_plugin!(NoArpFromRemotes);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_vtep_plugin_sdk::{Hooks, MacAddr, Registered, testing};

    #[test]
    fn it_answers_filter_only() {
        assert_eq!(NoArpFromRemotes::hooks(), Hooks::FILTER);
    }

    fn arp_from(vtep: &str) -> FrameMeta {
        FrameMeta {
            direction: Direction::FromUnderlay,
            source: Location::Remote(vtep.parse().unwrap()),
            ..FrameMeta::ethernet(5001, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr::BROADCAST, ARP)
        }
    }

    #[test]
    fn drops_arp_from_strangers_only() {
        let mut p = testing::init::<NoArpFromRemotes>(r#"{"trusted": ["198.18.0.2"]}"#).unwrap();
        let results = p.filter(&[arp_from("198.18.0.2"), arp_from("198.18.0.9")]);
        assert_eq!(
            results,
            [
                FilterResult::pass().cache_for(10),
                FilterResult::drop(UNTRUSTED_ARP)
            ]
        );
        assert_eq!(testing::counter("dropped"), 1);
    }

    #[test]
    fn a_bad_configuration_names_the_field() {
        let err = testing::init::<NoArpFromRemotes>(r#"{"trusted": ["nope"]}"#).err().unwrap();
        assert!(err.contains("trusted[0]"), "{err}");
    }
}
