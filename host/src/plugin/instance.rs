//! [`Instance`]: one live instance of a plugin in its own store, and the typed calls into it.
//! Every call runs under the budget it is given and the store's memory cap; any failure is
//! returned as a [`CallError`] and leaves the instance to be dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{InstancePre, TypedFunc};
use wasmtime::{Store, UpdateDeadline};

use super::adapt;
use super::bindings::wasm_vtep::plugin::types as wit;
use super::bindings::{HOOKS_INTERFACE, Version, v0_1, v0_2};
use super::error::CallError;
use super::host::{HostState, RawFrame};
use super::results::FilterResults;
use super::runtime::Runtime;
use super::sandbox::classify;
use super::watchdog::Slot;

/// A plugin's component, linked and checked against the bindings of its interface version.
#[derive(Clone)]
pub(crate) enum Pre {
    V0_1(v0_1::PluginPre<HostState>),
    V0_2(v0_2::PluginPre<HostState>),
}

impl Pre {
    /// Checks `pre` against the exports `version` has.
    pub(crate) fn new(version: Version, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        Ok(match version {
            Version::V0_1 => Pre::V0_1(v0_1::PluginPre::new(pre)?),
            Version::V0_2 => Pre::V0_2(v0_2::PluginPre::new(pre)?),
        })
    }

    pub(crate) fn version(&self) -> Version {
        match self {
            Pre::V0_1(_) => Version::V0_1,
            Pre::V0_2(_) => Version::V0_2,
        }
    }

    fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            Pre::V0_1(p) => p.instance_pre(),
            Pre::V0_2(p) => p.instance_pre(),
        }
    }
}

/// The `filter` export, called with a result type of our own rather than through the
/// bindings (whose `Vec` of results would be a heap allocation per call). Typed with
/// `'static` frames here; a call narrows it to the frames it has (`TypedFunc` is covariant in
/// its parameters). `filter-result` is the same in every version.
type FilterFunc<M> = TypedFunc<(&'static [M],), (FilterResults,)>;

/// An instance's exports, in the types of its interface version.
enum Exports {
    V0_1 {
        bindings: v0_1::Plugin,
        filter: FilterFunc<v0_1::wasm_vtep::plugin::types::FrameMeta>,
        /// The frames of a call narrowed to 0.1.0's metadata, kept to reuse its memory.
        metas: Vec<v0_1::wasm_vtep::plugin::types::FrameMeta>,
    },
    V0_2 {
        bindings: v0_2::Plugin,
        filter: FilterFunc<wit::FrameMeta>,
    },
}

/// A plugin instance.
pub(crate) struct Instance {
    store: Store<HostState>,
    exports: Exports,
    runtime: Runtime,
    /// Its calls, as the watchdog sees them.
    slot: Arc<Slot>,
}

impl core::fmt::Debug for Instance {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Instance")
            .field("state", self.store.data())
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Instantiates the plugin in a fresh store holding `state`.
    pub(crate) fn new(
        runtime: &Runtime,
        pre: &Pre,
        state: HostState,
        budget: Duration,
    ) -> Result<Instance, CallError> {
        let mut store = Store::new(pre.instance_pre().engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Every epoch increment reaches this check; only this call's own deadline interrupts
        // it (another call's overrun may have caused the increment).
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        let deadline = Instant::now() + budget;
        store.data_mut().deadline = deadline;
        store.set_epoch_deadline(1);
        let slot = runtime.watchdog().slot();
        let call = runtime.watchdog().call(&slot, deadline);
        let result = pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|instance| exports(&mut store, pre, &instance));
        drop(call);
        match result {
            Ok(exports) => Ok(Instance {
                store,
                exports,
                runtime: runtime.clone(),
                slot,
            }),
            Err(e) => Err(classify(&e, &store.data().limiter, budget)),
        }
    }

    /// Bytes of linear memory in use.
    pub(crate) fn memory_used(&self) -> usize {
        self.store.data().limiter.used()
    }

    fn call<R>(
        &mut self,
        budget: Duration,
        f: impl FnOnce(&mut Store<HostState>, &Exports) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let deadline = Instant::now() + budget;
        let state = self.store.data_mut();
        state.deadline = deadline;
        state.limiter.reset();
        self.store.set_epoch_deadline(1);
        let call = self.runtime.watchdog().call(&self.slot, deadline);
        let result = f(&mut self.store, &self.exports);
        drop(call);
        result.map_err(|e| classify(&e, &self.store.data().limiter, budget))
    }

    /// `init(config)`: the hooks the plugin implements, or its reason for refusing.
    pub(crate) fn init(
        &mut self,
        config: &str,
        budget: Duration,
    ) -> Result<Result<wit::Hooks, String>, CallError> {
        self.call(budget, |store, exports| match exports {
            Exports::V0_1 { bindings, .. } => Ok(bindings
                .wasm_vtep_plugin_hooks()
                .call_init(store, config)?
                .map(adapt::hooks)),
            Exports::V0_2 { bindings, .. } => {
                bindings.wasm_vtep_plugin_hooks().call_init(store, config)
            }
        })
    }

    /// `filter(frames)`, with `frames` readable through `frame-bytes`; checks that there is one
    /// result per frame.
    ///
    /// # Safety
    ///
    /// Every slice a [`RawFrame`] in `frames` was made from must stay borrowed (alive and
    /// unmodified) for the duration of this call.
    pub(crate) unsafe fn filter(
        &mut self,
        metas: &[wit::FrameMeta],
        frames: &mut Vec<RawFrame>,
        budget: Duration,
    ) -> Result<FilterResults, CallError> {
        if let Exports::V0_1 {
            metas: narrowed, ..
        } = &mut self.exports
        {
            narrowed.clear();
            narrowed.extend(metas.iter().map(adapt::frame_meta));
        }
        // SAFETY: the caller keeps the slices borrowed for this whole function, and the frames
        // are taken back below, before it returns.
        unsafe { self.store.data_mut().lend_frames(frames) };
        let result = self.call(budget, |store, exports| {
            let (results,) = match exports {
                Exports::V0_1 { filter, metas, .. } => {
                    let filter: TypedFunc<(&[_],), (FilterResults,)> = *filter;
                    filter.call(store, (metas.as_slice(),))?
                }
                Exports::V0_2 { filter, .. } => {
                    let filter: TypedFunc<(&[_],), (FilterResults,)> = *filter;
                    filter.call(store, (metas,))?
                }
            };
            Ok(results)
        });
        // SAFETY: as above; this swaps the lent frames back out of the store.
        unsafe { self.store.data_mut().lend_frames(frames) };
        let results = result?;
        if results.len() != metas.len() {
            return Err(CallError::Invalid(format!(
                "filter returned {} results for {} frames",
                results.len(),
                metas.len()
            )));
        }
        Ok(results)
    }

    /// `learn(event)`.
    pub(crate) fn learn(
        &mut self,
        event: wit::LearnEvent,
        budget: Duration,
    ) -> Result<wit::LearnDecision, CallError> {
        self.call(budget, |store, exports| match exports {
            Exports::V0_1 { bindings, .. } => Ok(adapt::learn_decision(
                bindings
                    .wasm_vtep_plugin_hooks()
                    .call_learn(store, adapt::learn_event(event))?,
            )),
            Exports::V0_2 { bindings, .. } => {
                bindings.wasm_vtep_plugin_hooks().call_learn(store, event)
            }
        })
    }

    /// `age(event)`.
    pub(crate) fn age(
        &mut self,
        event: wit::AgeEvent,
        budget: Duration,
    ) -> Result<wit::AgeDecision, CallError> {
        self.call(budget, |store, exports| match exports {
            Exports::V0_1 { bindings, .. } => Ok(adapt::age_decision(
                bindings
                    .wasm_vtep_plugin_hooks()
                    .call_age(store, adapt::age_event(event))?,
            )),
            Exports::V0_2 { bindings, .. } => {
                bindings.wasm_vtep_plugin_hooks().call_age(store, event)
            }
        })
    }
}

/// The exports of a new instance of `pre`, in its version's types.
fn exports(
    store: &mut Store<HostState>,
    pre: &Pre,
    instance: &wasmtime::component::Instance,
) -> wasmtime::Result<Exports> {
    Ok(match pre {
        Pre::V0_1(_) => Exports::V0_1 {
            bindings: v0_1::Plugin::new(&mut *store, instance)?,
            filter: filter_export(store, instance, Version::V0_1)?,
            metas: Vec::new(),
        },
        Pre::V0_2(_) => Exports::V0_2 {
            bindings: v0_2::Plugin::new(&mut *store, instance)?,
            filter: filter_export(store, instance, Version::V0_2)?,
        },
    })
}

/// The plugin's `filter` function, checked to have the type [`Instance::filter`] calls it with.
fn filter_export<M: wasmtime::component::ComponentType + wasmtime::component::Lower>(
    store: &mut Store<HostState>,
    instance: &wasmtime::component::Instance,
    version: Version,
) -> wasmtime::Result<FilterFunc<M>> {
    let version = version.as_str();
    let hooks = instance
        .get_export_index(&mut *store, None, &format!("{HOOKS_INTERFACE}@{version}"))
        .ok_or_else(|| wasmtime::format_err!("no {HOOKS_INTERFACE}@{version} export"))?;
    let filter = instance
        .get_export_index(&mut *store, Some(&hooks), "filter")
        .and_then(|index| instance.get_func(&mut *store, index))
        .ok_or_else(|| wasmtime::format_err!("no filter function in {HOOKS_INTERFACE}"))?;
    filter.typed(&*store)
}
