//! The service manager's readiness protocol (systemd's `sd_notify`, `Type=notify` and
//! `Type=notify-reload`): the daemon says `READY=1` once its sockets, groups, plugins and
//! control socket are up, `RELOADING=1` (with the monotonic time systemd 253 wants) while a
//! SIGHUP reloads its plugins and `READY=1` again after, and `STOPPING=1` when it begins to stop.
//!
//! Contract: without `NOTIFY_SOCKET` in the environment (not started by a service manager)
//! every call does nothing; a message that cannot be sent is logged (a warning: there are a
//! handful in a daemon's life) and never stops the daemon. After a reload the `STATUS=` line
//! says how many plugins were reloaded and how many refused (`systemctl status` shows it),
//! since `ExecReload` returns before the reload ends. The `sd-notify` crate speaks the datagram protocol (abstract sockets too).

use sd_notify::NotifyState;

/// The daemon is up: its sockets are bound, its groups joined, its plugins loaded.
pub(super) fn ready() {
    send(
        "READY",
        &[NotifyState::Ready, NotifyState::Status("running")],
    );
}

/// A SIGHUP's reload ended: `ok` plugins swapped, `refused` kept as they ran.
pub(super) fn reloaded(ok: usize, refused: usize) {
    let status = format!("running; plugins reloaded {ok}, refused {refused} (see the log)");
    send("READY", &[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A SIGHUP's reload begins.
pub(super) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("RELOADING", &[NotifyState::Reloading, now]),
        Err(e) => tracing::warn!(error = %e, "the monotonic clock for RELOADING=1"),
    }
}

/// The daemon begins to stop.
pub(super) fn stopping() {
    send("STOPPING", &[NotifyState::Stopping]);
}

fn send(what: &str, states: &[NotifyState<'_>]) {
    // `false`: NOTIFY_SOCKET stays set, for the later messages.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(state = what, error = %e, "telling the service manager failed");
    }
}
