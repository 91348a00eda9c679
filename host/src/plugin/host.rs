//! What a plugin may call: logging (rate-limited, through `tracing`), a monotonic clock,
//! counters it names, and the bytes of the frames it is filtering. Nothing else is linked:
//! no WASI, no files, no sockets, no wall clock.
//!
//! [`HostState`] is the data of a plugin's store. The counters a plugin declares live in its
//! runner's [`Tally`], so that the instance that replaces a failed one counts on where it
//! left off, and the control plane reads them without waiting for a call.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::{HasSelf, Linker, WasmStr};

use super::bindings::wasm_vtep::plugin::types;
use super::bindings::{Version, v0_1};
use super::ratelimit::RateLimit;
use super::sandbox::Limiter;
use super::stats::Tally;

/// Counters a plugin may declare, at most.
pub(crate) const MAX_COUNTERS: usize = 64;
/// Longest counter name, in bytes.
pub(crate) const MAX_COUNTER_NAME: usize = 64;
/// Longest log message kept, in bytes (the rest is cut).
const MAX_LOG_MESSAGE: usize = 512;
/// What `counter` returns when no more counters may be declared; `counter-add` ignores it.
const NO_COUNTER: u32 = u32::MAX;

/// One frame of the filter call in progress, as a raw slice (see [`HostState::lend_frames`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawFrame {
    ptr: *const u8,
    len: usize,
}

impl RawFrame {
    pub(crate) fn new(bytes: &[u8]) -> RawFrame {
        RawFrame {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

// SAFETY: a `RawFrame` is only dereferenced in `LentFrames::get`, during the filter call for which
// it was lent (see `HostState::lend_frames`), on the thread making that call; the bytes behind
// it are immutable and outlive the call. Moving one to another thread between calls moves an
// address that is never read again.
unsafe impl Send for RawFrame {}

/// The frames of the filter call in progress.
#[derive(Debug, Default)]
pub(crate) struct LentFrames(Vec<RawFrame>);

/// The data of a plugin's store.
#[derive(Debug)]
pub(crate) struct HostState {
    plugin: Arc<str>,
    pub(crate) limiter: Limiter,
    log: RateLimit,
    /// Where its declared counters and suppressed log lines are counted.
    tally: Arc<Tally>,
    frames: LentFrames,
    /// The runtime's start: `now-ms` counts from it.
    clock: Instant,
    /// When the call in progress must be interrupted.
    pub(crate) deadline: Instant,
}

impl HostState {
    pub(crate) fn new(
        plugin: Arc<str>,
        memory_limit: usize,
        clock: Instant,
        tally: Arc<Tally>,
    ) -> HostState {
        HostState {
            plugin,
            limiter: Limiter::new(memory_limit),
            log: RateLimit::new(10, 20),
            tally,
            frames: LentFrames::default(),
            clock,
            deadline: clock,
        }
    }

    /// Swaps `frames` in as the frames of the filter call about to be made; call again with
    /// the same vector after the call to take them back.
    ///
    /// # Safety
    ///
    /// Every slice a [`RawFrame`] in `frames` was made from must stay borrowed (alive and
    /// unmodified) until the frames are taken back: `frame-bytes` reads them.
    pub(crate) unsafe fn lend_frames(&mut self, frames: &mut Vec<RawFrame>) {
        core::mem::swap(&mut self.frames.0, frames);
    }
}

impl types::Host for HostState {}
impl v0_1::wasm_vtep::plugin::types::Host for HostState {}

/// Defines the `host` interface of every version in `linker` (it has not changed since
/// 0.1.0), by hand rather than through the bindings' trait, so that no call allocates: strings
/// are read in place and `frame-bytes` lowers the lent frame straight into the plugin's memory
/// (a generated import must return a `Vec`). A function's types are checked against a
/// plugin's imports by shape, so one definition serves every version.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_1::wasm_vtep::plugin::types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    for version in Version::ALL {
        add_host(linker, version)?;
    }
    Ok(())
}

fn add_host(linker: &mut Linker<HostState>, version: Version) -> wasmtime::Result<()> {
    let mut host = linker.instance(&format!("wasm-vtep:plugin/host@{}", version.as_str()))?;
    host.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, HostState>, (level, message): (types::Level, WasmStr)| {
            // Read (checked: invalid UTF-8 traps) before the rate limit, so that whether a bad
            // string traps does not depend on it. In place: a plugin's strings are UTF-8 (the
            // SDK's encoding); only another encoding would be copied.
            // (The rate limit needs the store mutably, so the string is read twice.)
            message.to_str(&store)?;
            if let Some(suppressed) = store.data_mut().allow_log() {
                store
                    .data()
                    .log(level, suppressed, &message.to_str(&store)?);
            }
            Ok(())
        },
    )?;
    host.func_wrap("now-ms", |store: StoreContextMut<'_, HostState>, (): ()| {
        Ok((store.data().now_ms(),))
    })?;
    host.func_wrap(
        "counter",
        |store: StoreContextMut<'_, HostState>, (name,): (WasmStr,)| {
            let name = name.to_str(&store)?;
            Ok((store.data().counter(&name),))
        },
    )?;
    host.func_wrap(
        "counter-add",
        |store: StoreContextMut<'_, HostState>, (id, delta): (u32, u64)| {
            store.data().counter_add(id, delta);
            Ok(())
        },
    )?;
    host.func_wrap(
        "frame-bytes",
        |store: StoreContextMut<'_, HostState>, (index,): (u32,)| {
            // SAFETY: `func_wrap` wants a `'static` result, but the slice does not live that
            // long: a synchronous host function's result is lowered (copied into the plugin's
            // memory) before the call returns to wasm, so inside the filter call the frames
            // are lent for, and the slice is dropped then. Outside `filter` no frames are lent
            // and the slice is empty.
            Ok((unsafe { store.data().frames.get(index) },))
        },
    )?;
    Ok(())
}

impl LentFrames {
    /// The bytes of frame `index` (empty for an index out of range), with a lifetime of the
    /// caller's choosing.
    ///
    /// # Safety
    ///
    /// The slice must not be used after the frames are taken back from the store (see
    /// [`HostState::lend_frames`]).
    unsafe fn get<'a>(&self, index: u32) -> &'a [u8] {
        let Some(frame) = usize::try_from(index).ok().and_then(|i| self.0.get(i)) else {
            return &[];
        };
        // SAFETY: frames are in a store only while lent for the filter call in progress
        // (`lend_frames`), whose caller keeps the slices they were made from borrowed until it
        // takes them back, and our caller uses the slice only until then; `RawFrame::new`
        // took pointer and length from one such slice.
        unsafe { core::slice::from_raw_parts(frame.ptr, frame.len) }
    }
}

impl HostState {
    /// Whether a log line may go out now, and how many were suppressed before it.
    fn allow_log(&mut self) -> Option<u64> {
        let allowed = self.log.allow(Instant::now());
        self.tally
            .logs_suppressed
            .store(self.log.suppressed(), std::sync::atomic::Ordering::Relaxed);
        allowed
    }

    fn log(&self, level: types::Level, suppressed: u64, message: &str) {
        let mut end = message.len().min(MAX_LOG_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        // Escaped, so that a plugin cannot forge log lines with newlines or escapes.
        let message = message[..end].escape_debug();
        let plugin = &*self.plugin;
        match level {
            types::Level::Error => tracing::error!(plugin, suppressed, "{message}"),
            types::Level::Warn => tracing::warn!(plugin, suppressed, "{message}"),
            types::Level::Info => tracing::info!(plugin, suppressed, "{message}"),
            types::Level::Debug => tracing::debug!(plugin, suppressed, "{message}"),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn counter(&self, name: &str) -> u32 {
        let mut counters = self.tally.counters();
        if let Some(i) = counters.iter().position(|(n, _)| n == name) {
            return u32::try_from(i).unwrap_or(NO_COUNTER);
        }
        if name.is_empty() || name.len() > MAX_COUNTER_NAME || counters.len() >= MAX_COUNTERS {
            return NO_COUNTER;
        }
        counters.push((name.to_owned(), 0));
        u32::try_from(counters.len() - 1).unwrap_or(NO_COUNTER)
    }

    fn counter_add(&self, id: u32, delta: u64) {
        let mut counters = self.tally.counters();
        if let Some((_, n)) = usize::try_from(id).ok().and_then(|i| counters.get_mut(i)) {
            *n = n.saturating_add(delta);
        }
    }
}
