//! `vni-filter`: a wasm-vtep plugin that filters frames with an ACL: rules matching on MACs,
//! ethertype, IPv4/IPv6 prefixes, IP protocol, L4 ports, direction and VNI, and (interface
//! 0.2.0) DSCP, a TCP connection's opening SYN, ICMP type and ARP opcode; first match wins,
//! then a default action.
//!
//! Layer: a plugin (the `filter` hook only). Contract: one verdict per frame; a drop carries
//! the matching rule's number as its reason code (rule index + 1 in the order `rules`,
//! `deny`, `allow`; 0 for the default action), so `vtep stats` counts drops per rule. Every
//! verdict depends on the frame's metadata alone, so each is cacheable per flow for
//! `cache_secs` and the host skips the call for flows it has seen.
//!
//! ```toml
//! [[plugin]]
//! name = "no-icmp"
//! path = "target/wasm32-unknown-unknown/release/vni_filter.wasm"
//! vnis = [5001]
//! config = { deny = [{ ip_proto = "icmp" }] }
//! ```

mod rule;

use serde::Deserialize;
use wasm_vtep_plugin_sdk::{Counter, FilterResult, FrameMeta, Plugin, Value, from_config};

pub use rule::{Action, Prefix, Rule};

/// How long the host may reuse a verdict for a flow when the config does not say.
pub const DEFAULT_CACHE_SECS: u32 = 10;

/// The configuration as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Rules with their own `action`, in order.
    #[serde(default)]
    rules: Vec<rule::RawRule>,
    /// The short form: rules whose action is deny (checked after `rules`) ...
    #[serde(default)]
    deny: Vec<rule::RawRule>,
    /// ... and allow (checked last).
    #[serde(default)]
    allow: Vec<rule::RawRule>,
    /// What happens to a frame no rule matches.
    #[serde(default)]
    default: Option<Action>,
    #[serde(default)]
    cache_secs: Option<u32>,
}

/// The plugin: its rules, checked, and its counters.
#[derive(Debug)]
pub struct VniFilter {
    rules: Vec<Rule>,
    default: Action,
    cache_secs: u32,
    allowed: Counter,
    denied: Counter,
}

impl VniFilter {
    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The verdict for one frame.
    pub fn decide(&self, frame: &FrameMeta) -> FilterResult {
        let hit = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matches(frame));
        let (action, reason) = match hit {
            // At most u16::MAX rules (checked at init), so the reason always fits.
            Some((index, rule)) => (rule.action, u16::try_from(index + 1).unwrap_or(u16::MAX)),
            None => (self.default, 0),
        };
        let verdict = match action {
            Action::Allow => FilterResult::pass(),
            Action::Deny => FilterResult::drop(reason),
        };
        verdict.cache_for(self.cache_secs)
    }
}

impl Plugin for VniFilter {
    fn init(config: &Value) -> Result<Self, String> {
        let raw: RawConfig = from_config(config)?;
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let path = format!("config.rules[{i}]");
            let action = r
                .action
                .ok_or_else(|| format!("{path}: missing `action` (\"allow\" or \"deny\")"))?;
            rules.push(Rule::from_raw(r, action, &path)?);
        }
        for (list, action, name) in [
            (raw.deny, Action::Deny, "deny"),
            (raw.allow, Action::Allow, "allow"),
        ] {
            for (i, r) in list.into_iter().enumerate() {
                let path = format!("config.{name}[{i}]");
                if r.action.is_some_and(|a| a != action) {
                    return Err(format!(
                        "{path}: a rule in `{name}` cannot have another action"
                    ));
                }
                rules.push(Rule::from_raw(r, action, &path)?);
            }
        }
        if rules.len() > usize::from(u16::MAX) {
            return Err(format!(
                "config: {} rules; at most {} (a drop's reason code is its rule's number)",
                rules.len(),
                u16::MAX
            ));
        }
        Ok(VniFilter {
            rules,
            default: raw.default.unwrap_or(Action::Allow),
            cache_secs: raw.cache_secs.unwrap_or(DEFAULT_CACHE_SECS),
            allowed: Counter::new("allowed"),
            denied: Counter::new("denied"),
        })
    }
}

impl wasm_vtep_plugin_sdk::Filter for VniFilter {
    fn filter(&mut self, frames: &[FrameMeta]) -> Vec<FilterResult> {
        let results: Vec<FilterResult> = frames.iter().map(|f| self.decide(f)).collect();
        // One host call per counter and batch, not per frame.
        let denied = results
            .iter()
            .filter(|r| r.verdict != wasm_vtep_plugin_sdk::Verdict::Pass)
            .count();
        let allowed = results.len() - denied;
        if allowed > 0 {
            self.allowed.add(allowed as u64);
        }
        if denied > 0 {
            self.denied.add(denied as u64);
        }
        results
    }
}

wasm_vtep_plugin_sdk::export_plugin!(VniFilter);

#[cfg(test)]
mod tests;
