//! The daemon's plugins and who calls them. Each worker calls its own copy of every plugin
//! (its own instances, verdict cache and counters: see `plugin::Plugin::another`), so that
//! filtering scales with the workers and no lock is shared between them on the way. Learning
//! and aging decisions are made on one more copy, by the learning and aging thread (see
//! `policy`): a learn plugin's state (say, a MAC's move history) is then one state whatever
//! worker saw the frame, and no worker ever waits for a learn or age call.
//!
//! A worker's own hooks, and the queue that takes learn events to that thread, are in
//! `worker_hooks`.
//!
//! Workers copy the plugins that filter; the learning and aging thread copies those that learn
//! or age. A reload loads the new plugin and its copies off the data path, then leaves each
//! caller its copy (or the removal of the old one, if the caller no longer needs it) in a
//! [`Mailbox`], which the caller takes between two batches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::DaemonError;
use crate::config::PluginSpec;
use crate::plugin::{LoadError, Plugin, PluginChain, Runtime};
use crate::sync::lock;

/// Who calls a plugin copy, and so which plugins it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// A data path worker: the plugins that filter.
    Worker,
    /// The learning and aging thread: the plugins that learn or age.
    Policy,
}

impl Caller {
    fn needs(self, plugin: &Plugin) -> bool {
        match self {
            Caller::Worker => plugin.has_filter(),
            Caller::Policy => plugin.has_learn_or_age(),
        }
    }
}

/// The loaded plugins, as the control plane sees them.
#[derive(Debug)]
pub(super) struct Plugins {
    /// A [template](Plugin::template) of each plugin, never called: its reports add up every
    /// caller's counts, and reloads and new callers copy it.
    catalog: Mutex<PluginChain>,
    /// Every plugin's name, in configuration order (a reload keeps it).
    order: Vec<String>,
    /// One per worker, then one for the learning and aging thread.
    mailboxes: Vec<Mailbox>,
    /// Held by a reload from its first copy to its last post, so that two reloads of one
    /// plugin leave every caller with the same one.
    reloading: Mutex<()>,
    /// The runtime, if any plugin is configured (reloads compile on it).
    runtime: Option<Runtime>,
}

/// What a reload left for one caller, to swap in between two batches: by plugin name, its
/// copy, or nothing if the caller no longer needs that plugin.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    pending: AtomicBool,
    plugins: Mutex<Vec<(String, Option<Plugin>)>>,
}

impl Mailbox {
    /// Swaps the plugins left here into `chain` (in `order`); true if there were any. A
    /// relaxed load when there are none.
    pub(super) fn deliver(&self, chain: &mut PluginChain, order: &[String]) -> bool {
        if !self.pending.load(Ordering::Relaxed) || !self.pending.swap(false, Ordering::Acquire) {
            return false;
        }
        let plugins = core::mem::take(&mut *lock(&self.plugins));
        for (name, p) in plugins {
            // Dropped here, on the caller's thread: its instances are the caller's.
            drop(chain.set(&name, p, order));
        }
        true
    }

    fn post(&self, name: &str, plugin: Option<Plugin>) {
        lock(&self.plugins).push((name.to_owned(), plugin));
        self.pending.store(true, Ordering::Release);
    }
}

impl Plugins {
    /// The plugins of `catalog` (loaded copies, kept as templates), with a mailbox for each of
    /// `workers` workers and for the learning and aging thread.
    pub(super) fn new(catalog: &PluginChain, runtime: Option<Runtime>, workers: usize) -> Plugins {
        Plugins {
            order: catalog.iter().map(|p| p.name().to_owned()).collect(),
            catalog: Mutex::new(catalog.templates()),
            mailboxes: (0..=workers).map(|_| Mailbox::default()).collect(),
            reloading: Mutex::new(()),
            runtime,
        }
    }

    /// The catalog, locked: for reports (never held across a plugin call or an
    /// instantiation: its plugins are templates).
    pub(super) fn catalog(&self) -> MutexGuard<'_, PluginChain> {
        lock(&self.catalog)
    }

    /// Every plugin's name, in configuration order.
    pub(super) fn order(&self) -> &[String] {
        &self.order
    }

    /// The runtime, if plugins are configured.
    pub(super) fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }

    /// A new caller's copies of the plugins it needs, instantiated now (off the data path, and
    /// outside the catalog's lock).
    pub(super) fn copies(&self, caller: Caller) -> Result<PluginChain, LoadError> {
        let templates = self.catalog().templates();
        templates.copies(|p| caller.needs(p))
    }

    /// Worker `i`'s mailbox; the last one is the learning and aging thread's.
    pub(super) fn mailbox(&self, i: usize) -> &Mailbox {
        // There is one per caller; an index past them is the last one's.
        &self.mailboxes[i.min(self.mailboxes.len() - 1)]
    }

    /// Puts `plugin` in the place of the one with its name, for every caller: makes each
    /// caller's copy first (the slow part), then leaves them in the mailboxes; with
    /// `carry_counts` its reports go on from the old one's counts. The old template is
    /// returned to be dropped by the caller.
    pub(super) fn replace(
        &self,
        plugin: Plugin,
        carry_counts: bool,
    ) -> Result<Option<Plugin>, LoadError> {
        let _one_at_a_time = lock(&self.reloading);
        // Under the reload lock: two reloads at once carry one after the other.
        if carry_counts && let Some(old) = self.catalog().get(plugin.name()) {
            plugin.carry_counts_from(old);
        }
        let workers = self.mailboxes.len() - 1;
        let copies = self
            .mailboxes
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let caller = if i < workers {
                    Caller::Worker
                } else {
                    Caller::Policy
                };
                caller.needs(&plugin).then(|| plugin.another()).transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = plugin.name().to_owned();
        let old = self.catalog().replace(plugin.template()).ok();
        drop(plugin);
        for (mailbox, copy) in self.mailboxes.iter().zip(copies) {
            mailbox.post(&name, copy);
        }
        Ok(old)
    }
}

/// Loads every configured plugin, in order, as `vtep run` does before it opens a socket (and
/// `vtep check` to check them); the first that fails is the error. No plugins: no runtime.
pub fn load_plugins(specs: &[PluginSpec]) -> Result<(Option<Runtime>, PluginChain), DaemonError> {
    let mut chain = PluginChain::new();
    if specs.is_empty() {
        return Ok((None, chain)); // no ticker, no engine: plugins cost nothing
    }
    let runtime = Runtime::new()?;
    for spec in specs {
        let name = spec.name.clone();
        let started = Instant::now();
        let plugin = Plugin::load(&runtime, spec.clone()).map_err(|error| DaemonError::Plugin {
            name: name.clone(),
            error,
        })?;
        let report = plugin.report();
        tracing::info!(
            plugin = name,
            path = %spec.path.display(),
            interface = report.interface,
            hooks = ?report.hooks,
            took_ms = started.elapsed().as_millis(),
            "plugin attached"
        );
        // Names are unique: the configuration checked them.
        let _ = chain.push(plugin);
    }
    Ok((Some(runtime), chain))
}
