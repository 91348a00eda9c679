//! [`Instance`]: one live instance of a plugin in its own store, and the typed calls into it.
//! Every call runs under the budget it is given and the store's memory cap; any failure is
//! returned as a [`CallError`] and leaves the instance to be dropped.

use std::time::{Duration, Instant};

use wasmtime::component::TypedFunc;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::exports::wasm_vtep::plugin::hooks::Guest;
use super::bindings::wasm_vtep::plugin::types as wit;
use super::bindings::{HOOKS_INTERFACE, Plugin as Bindings, PluginPre};
use super::error::CallError;
use super::host::{HostState, RawFrame};
use super::results::FilterResults;
use super::runtime::Runtime;
use super::sandbox::classify;
use super::watchdog::Slot;

/// A plugin instance.
pub(crate) struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    /// The `filter` export, called with a result type of our own rather than through
    /// `bindings` (whose `Vec` of results would be a heap allocation per call). Typed with
    /// `'static` frames here; a call narrows it to the frames it has (`TypedFunc` is covariant
    /// in its parameters).
    filter: TypedFunc<(&'static [wit::FrameMeta],), (FilterResults,)>,
    runtime: Runtime,
    /// Its calls, as the watchdog sees them.
    slot: std::sync::Arc<Slot>,
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
        pre: &PluginPre<HostState>,
        state: HostState,
        budget: Duration,
    ) -> Result<Instance, CallError> {
        let mut store = Store::new(pre.engine(), state);
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
            .and_then(|instance| {
                let bindings = Bindings::new(&mut store, &instance)?;
                Ok((bindings, filter_export(&mut store, &instance)?))
            });
        drop(call);
        match result {
            Ok((bindings, filter)) => Ok(Instance {
                store,
                bindings,
                filter,
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
        f: impl FnOnce(&mut Store<HostState>, &Guest) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let deadline = Instant::now() + budget;
        let state = self.store.data_mut();
        state.deadline = deadline;
        state.limiter.reset();
        self.store.set_epoch_deadline(1);
        let guest = self.bindings.wasm_vtep_plugin_hooks();
        let call = self.runtime.watchdog().call(&self.slot, deadline);
        let result = f(&mut self.store, guest);
        drop(call);
        result.map_err(|e| classify(&e, &self.store.data().limiter, budget))
    }

    /// `init(config)`: the hooks the plugin implements, or its reason for refusing.
    pub(crate) fn init(
        &mut self,
        config: &str,
        budget: Duration,
    ) -> Result<Result<wit::Hooks, String>, CallError> {
        self.call(budget, |store, guest| guest.call_init(store, config))
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
        let filter = self.filter;
        // SAFETY: the caller keeps the slices borrowed for this whole function, and the frames
        // are taken back below, before it returns.
        unsafe { self.store.data_mut().lend_frames(frames) };
        let result = self.call(budget, |store, _| {
            let filter: TypedFunc<(&[wit::FrameMeta],), (FilterResults,)> = filter;
            filter.call(store, (metas,)).map(|(results,)| results)
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
        self.call(budget, |store, guest| guest.call_learn(store, event))
    }

    /// `age(event)`.
    pub(crate) fn age(
        &mut self,
        event: wit::AgeEvent,
        budget: Duration,
    ) -> Result<wit::AgeDecision, CallError> {
        self.call(budget, |store, guest| guest.call_age(store, event))
    }
}

/// The plugin's `filter` function, checked to have the type [`Instance::filter`] calls it with.
fn filter_export(
    store: &mut Store<HostState>,
    instance: &wasmtime::component::Instance,
) -> wasmtime::Result<TypedFunc<(&'static [wit::FrameMeta],), (FilterResults,)>> {
    let version = super::bindings::INTERFACE_VERSION;
    let hooks = instance
        .get_export_index(&mut *store, None, &format!("{HOOKS_INTERFACE}@{version}"))
        .ok_or_else(|| wasmtime::format_err!("no {HOOKS_INTERFACE}@{version} export"))?;
    let filter = instance
        .get_export_index(&mut *store, Some(&hooks), "filter")
        .and_then(|index| instance.get_func(&mut *store, index))
        .ok_or_else(|| wasmtime::format_err!("no filter function in {HOOKS_INTERFACE}"))?;
    filter.typed(&*store)
}
