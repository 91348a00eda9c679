//! [`PluginChain`]: the loaded plugins in configuration order, as the pipeline's [`Hooks`].
//!
//! - filter: each plugin decides the frames of its VNIs that earlier plugins passed; a drop
//!   is final.
//! - learn: any reject wins; otherwise any accept-sticky makes the entry sticky; with no
//!   plugin giving a decision, the built-in policy decides (which never moves a sticky entry).
//! - age: the entry is kept if any plugin keeps it (for the longest time asked); otherwise it
//!   expires.
//!
//! Each caller has a chain of its own (a worker: the plugins that filter; the learning and
//! aging thread: those that learn or age), made with [`PluginChain::copies`]: no lock is shared
//! between callers on the way to a plugin. A reload reaches a caller as a new copy that the
//! caller puts in with [`PluginChain::set`] between two batches (on its own thread, so no frame
//! sees half of a reload); [`PluginChain::replace`] is for a chain of
//! [templates](Plugin::template), such as the daemon's catalog, which nothing calls.

use std::collections::BTreeMap;
use std::time::Instant;

use super::error::LoadError;
use super::loaded::Plugin;
use crate::control::PluginReport;
use crate::fdb::{
    AgeDecision, AgeEvent, AgePolicy, Builtin, LearnDecision, LearnEvent, LearnPolicy,
};
use crate::vtep::{FilterBatch, Hooks, Verdict};
use crate::wire::Vni;

/// The plugins, in order.
#[derive(Debug, Default)]
pub struct PluginChain {
    plugins: Vec<Plugin>,
}

/// No plugin has this name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no plugin named {0:?}")]
pub struct NoSuchPlugin(pub String);

/// A plugin name that is already taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a plugin named {0:?} is already loaded")]
pub struct DuplicateName(pub String);

impl PluginChain {
    /// No plugin: every hook is the built-in one and costs nothing.
    pub fn new() -> PluginChain {
        PluginChain::default()
    }

    /// Appends `plugin`.
    pub fn push(&mut self, plugin: Plugin) -> Result<(), DuplicateName> {
        if self.get(plugin.name()).is_some() {
            return Err(DuplicateName(plugin.name().to_owned()));
        }
        self.plugins.push(plugin);
        Ok(())
    }

    /// Another caller's chain: a copy (see [`Plugin::another`]) of each plugin `wanted` picks,
    /// in order. Instantiates each: call it off the data path.
    pub fn copies(&self, wanted: impl Fn(&Plugin) -> bool) -> Result<PluginChain, LoadError> {
        let plugins = self
            .plugins
            .iter()
            .filter(|p| wanted(p))
            .map(Plugin::another)
            .collect::<Result<_, _>>()?;
        Ok(PluginChain { plugins })
    }

    /// The chain's [templates](Plugin::template): cheap, no instance.
    pub fn templates(&self) -> PluginChain {
        PluginChain {
            plugins: self.plugins.iter().map(Plugin::template).collect(),
        }
    }

    /// Puts `plugin` in the place of the plugin named `name`, or removes that plugin if
    /// `plugin` is `None`; a plugin the chain did not have goes where `order` (every plugin's
    /// name, in configuration order) puts it. Returns the plugin taken out.
    pub fn set(&mut self, name: &str, plugin: Option<Plugin>, order: &[String]) -> Option<Plugin> {
        let old = self
            .plugins
            .iter()
            .position(|p| p.name() == name)
            .map(|i| self.plugins.remove(i));
        if let Some(plugin) = plugin {
            let rank = |n: &str| order.iter().position(|o| o == n).unwrap_or(usize::MAX);
            let at = self
                .plugins
                .iter()
                .position(|p| rank(p.name()) > rank(name))
                .unwrap_or(self.plugins.len());
            self.plugins.insert(at, plugin);
        }
        old
    }

    /// Whether some plugin's learn hook decides learning on `vni`.
    pub fn learns(&self, vni: Vni) -> bool {
        self.plugins.iter().any(|p| p.learns(vni))
    }

    /// Puts `plugin` in the place of the one with its name and returns the old one. Its
    /// verdict cache and counters start anew.
    pub fn replace(&mut self, plugin: Plugin) -> Result<Plugin, NoSuchPlugin> {
        match self.plugins.iter_mut().find(|p| p.name() == plugin.name()) {
            Some(slot) => Ok(core::mem::replace(slot, plugin)),
            None => Err(NoSuchPlugin(plugin.name().to_owned())),
        }
    }

    /// The plugin with this name.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// The plugins, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Plugin> + '_ {
        self.plugins.iter()
    }

    /// Number of plugins.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// No plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Reports of every plugin, in order.
    pub fn reports(&self) -> Vec<PluginReport> {
        self.plugins.iter().map(Plugin::report).collect()
    }

    /// Every plugin's counters, host-kept and its own, for `vtep stats`.
    pub fn counters(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.plugins
            .iter()
            .map(|p| {
                let (mut host, own) = p.counters();
                for (name, n) in own {
                    host.insert(format!("plugin.{name}"), n);
                }
                (p.name().to_owned(), host)
            })
            .collect()
    }
}

impl Hooks for PluginChain {
    fn filters(&self, vni: Vni) -> bool {
        self.plugins.iter().any(|p| p.filters(vni))
    }

    fn filter(&mut self, now: Instant, batch: &dyn FilterBatch, verdicts: &mut [Verdict]) {
        for p in &mut self.plugins {
            p.filter(now, batch, verdicts);
        }
    }
}

impl LearnPolicy for PluginChain {
    fn decide_learn(&mut self, event: &LearnEvent) -> LearnDecision {
        let mut decided = None;
        for p in &mut self.plugins {
            match p.learn(event) {
                Some(LearnDecision::Reject) => return LearnDecision::Reject,
                Some(LearnDecision::AcceptSticky) => decided = Some(LearnDecision::AcceptSticky),
                Some(LearnDecision::Accept) => {
                    decided = decided.or(Some(LearnDecision::Accept));
                }
                Some(LearnDecision::Defer) | None => {}
            }
        }
        decided.unwrap_or_else(|| Builtin.decide_learn(event))
    }
}

impl AgePolicy for PluginChain {
    fn decide_age(&mut self, event: &AgeEvent) -> AgeDecision {
        let mut keep: Option<u64> = None;
        for p in &mut self.plugins {
            if let Some(AgeDecision::KeepFor(ms)) = p.age(event) {
                keep = Some(keep.map_or(ms, |k| k.max(ms)));
            }
        }
        keep.map_or(AgeDecision::Expire, AgeDecision::KeepFor)
    }
}
