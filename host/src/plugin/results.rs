//! [`FilterResults`]: the `list<filter-result>` a filter call returns, lifted out of the
//! plugin's memory into a buffer of fixed capacity rather than a fresh `Vec`, so that a warm
//! filter call allocates nothing on the host.
//!
//! Contract: a plugin's answer holds at most [`MAX_FILTER_BATCH`] results (it is given at most
//! that many frames and must answer each once); a longer list is refused as an invalid answer
//! before any of it is read, which also bounds what a misbehaving plugin can make the host
//! copy. The lifting itself is wasmtime's: its bounds, alignment and enum checks apply to
//! every element as they would for a `Vec`.

use arrayvec::ArrayVec;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmList};

use super::bindings::wasm_vtep::plugin::types::FilterResult;
use super::loaded::MAX_FILTER_BATCH;

/// A plugin answered a filter call with more results than a call has frames.
#[derive(Debug, thiserror::Error)]
#[error("filter returned {0} results; a call has at most {MAX_FILTER_BATCH} frames")]
pub(crate) struct TooManyResults(pub(crate) usize);

/// The results of one filter call, in order.
#[derive(Debug, Default)]
pub(crate) struct FilterResults(ArrayVec<FilterResult, MAX_FILTER_BATCH>);

impl core::ops::Deref for FilterResults {
    type Target = [FilterResult];

    fn deref(&self) -> &[FilterResult] {
        &self.0
    }
}

impl FilterResults {
    /// Copies the elements of `list` (validated by wasmtime one by one) into a new value.
    fn lift(
        cx: &mut LiftContext<'_>,
        list: &WasmList<FilterResult>,
    ) -> wasmtime::Result<FilterResults> {
        if list.len() > MAX_FILTER_BATCH {
            return Err(TooManyResults(list.len()).into());
        }
        let mut results = FilterResults::default();
        // Cannot overflow: the length was checked above, and wasmtime adds one item per element.
        FilterResult::linear_lift_into_from_memory(cx, list, &mut results.0)?;
        Ok(results)
    }
}

// SAFETY: every associated item is `[FilterResult]`'s, the type a `Vec<FilterResult>` (what
// bindgen uses for this result) forwards to; `FilterResults` is lifted from exactly that
// representation below (through `WasmList`, which checks it).
unsafe impl ComponentType for FilterResults {
    type Lower = <[FilterResult] as ComponentType>::Lower;

    const ABI: CanonicalAbiInfo = <[FilterResult] as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[FilterResult] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifts through `WasmList<FilterResult>`, as wasmtime's own `Lift for Vec<T>` does,
// with the same `Lower` representation (see `ComponentType` above).
unsafe impl Lift for FilterResults {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let list = <WasmList<FilterResult> as Lift>::linear_lift_from_flat(cx, ty, src)?;
        FilterResults::lift(cx, &list)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let list = <WasmList<FilterResult> as Lift>::linear_lift_from_memory(cx, ty, bytes)?;
        FilterResults::lift(cx, &list)
    }
}
