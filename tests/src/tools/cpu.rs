//! CPU time from `/proc`: the machine's totals (`/proc/stat`), a process's (`/proc/<pid>/stat`,
//! all its threads) and the calling thread's (`getrusage(RUSAGE_THREAD)`), in seconds, as the
//! benchmark needs them to say what a data plane cost.
//!
//! This kernel may account time by ticks (`CONFIG_TICK_CPU_ACCOUNTING`, no
//! `CONFIG_IRQ_TIME_ACCOUNTING`): then softirq work is charged both to the machine's `softirq`
//! column and to the `stime` of whatever task it interrupted, and every figure has a resolution
//! of one tick (`sysconf(_SC_CLK_TCK)`, usually 10 ms).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Clock ticks per second, the unit of `/proc/stat` and `/proc/<pid>/stat`.
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf takes no pointers and has no side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The machine-wide CPU time of every CPU together (`cpu` line of `/proc/stat`), in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MachineCpu {
    /// Time in user mode (niced processes included).
    pub user: f64,
    /// Time in kernel mode on behalf of processes (system calls).
    pub system: f64,
    /// Time serving hardware interrupts.
    pub irq: f64,
    /// Time serving softirqs: where the kernel's own network processing runs.
    pub softirq: f64,
    /// Time stolen by the hypervisor.
    pub steal: f64,
    /// Idle time, waiting for I/O included.
    pub idle: f64,
}

impl MachineCpu {
    /// Reads `/proc/stat`.
    pub fn read() -> Result<MachineCpu> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_proc_stat(&text, clock_ticks_per_sec()).context("parsing /proc/stat")
    }

    /// The time spent since `earlier`.
    pub fn since(&self, earlier: &MachineCpu) -> MachineCpu {
        MachineCpu {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
            irq: self.irq - earlier.irq,
            softirq: self.softirq - earlier.softirq,
            steal: self.steal - earlier.steal,
            idle: self.idle - earlier.idle,
        }
    }

    /// Everything but idle time.
    pub fn busy(&self) -> f64 {
        self.user + self.system + self.irq + self.softirq + self.steal
    }
}

fn parse_proc_stat(text: &str, hz: f64) -> Result<MachineCpu> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no \"cpu\" line")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("a non-numeric field")?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = v[..] else {
        bail!("{} fields on the cpu line, expected at least 8", v.len());
    };
    let s = |ticks: u64| ticks as f64 / hz;
    Ok(MachineCpu {
        user: s(user + nice),
        system: s(system),
        irq: s(irq),
        softirq: s(softirq),
        steal: s(steal),
        idle: s(idle + iowait),
    })
}

/// User and system time of a process or thread, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TaskCpu {
    /// User-mode time.
    pub user: f64,
    /// Kernel-mode time (with tick accounting, softirqs that interrupted it too).
    pub system: f64,
}

impl TaskCpu {
    /// `utime` and `stime` of process `pid` from `/proc/<pid>/stat`: all its threads, those
    /// that exited included.
    pub fn of_process(pid: u32) -> Result<TaskCpu> {
        TaskCpu::from_stat_file(&Path::new("/proc").join(pid.to_string()).join("stat"))
    }

    /// `utime` and `stime` from a `/proc/.../stat` file (a process's or a thread's).
    pub fn from_stat_file(path: &Path) -> Result<TaskCpu> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        parse_pid_stat(&text, clock_ticks_per_sec())
            .with_context(|| format!("parsing {}", path.display()))
    }

    /// The calling thread's own time so far (`getrusage(RUSAGE_THREAD)`, microsecond units
    /// but still tick-accounted underneath).
    pub fn of_this_thread() -> TaskCpu {
        rusage(libc::RUSAGE_THREAD)
    }

    /// The time of this process's children that have exited and been waited for
    /// (`getrusage(RUSAGE_CHILDREN)`): a finished `iperf3` client, `ping`, `nstat`.
    pub fn of_reaped_children() -> TaskCpu {
        rusage(libc::RUSAGE_CHILDREN)
    }

    /// The time spent since `earlier`.
    pub fn since(&self, earlier: &TaskCpu) -> TaskCpu {
        TaskCpu {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }

    /// User plus system time.
    pub fn total(&self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Add for TaskCpu {
    type Output = TaskCpu;
    fn add(self, other: TaskCpu) -> TaskCpu {
        TaskCpu {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

fn rusage(who: libc::c_int) -> TaskCpu {
    // SAFETY: rusage is plain data; all-zero bytes are a valid value of it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    if rc != 0 {
        return TaskCpu::default();
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    TaskCpu {
        user: secs(usage.ru_utime),
        system: secs(usage.ru_stime),
    }
}

fn parse_pid_stat(text: &str, hz: f64) -> Result<TaskCpu> {
    // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    let rest = &text[text.rfind(')').context("no ')' after the command name")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let field = |i: usize| -> Result<f64> {
        let raw = fields.get(i).context("too few fields")?;
        Ok(raw.parse::<u64>().context("a non-numeric time")? as f64 / hz)
    };
    Ok(TaskCpu {
        user: field(11)?,
        system: field(12)?,
    })
}

/// The pids of the kernel's `ksoftirqd/<cpu>` threads, where softirq work goes when there is
/// too much of it to run on the way out of interrupts and system calls.
pub fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let text = "cpu  207399 25273 50698 278526 2360 0 6480 2929 0 0\n\
                    cpu0 96121 12748 24244 148305 891 0 3064 1454 0 0\nintr 1 2\n";
        let c = parse_proc_stat(text, 100.0).unwrap();
        assert_eq!(c.user, 2326.72);
        assert_eq!(c.system, 506.98);
        assert_eq!(c.softirq, 64.8);
        assert_eq!(c.idle, 2808.86);
        assert!(parse_proc_stat("cpu  1 2 3\n", 100.0).is_err());
        assert!(parse_proc_stat("intr 1\n", 100.0).is_err());
        let later = MachineCpu { softirq: 70.0, ..c };
        assert!((later.since(&c).softirq - 5.2).abs() < 1e-9);
        assert_eq!(later.since(&c).user, 0.0);
    }

    #[test]
    fn parses_pid_stat_with_awkward_names() {
        let text = "1234 (a) b) c) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0";
        let t = parse_pid_stat(text, 100.0).unwrap();
        assert_eq!((t.user, t.system), (2.5, 0.75));
        assert!(parse_pid_stat("1 (x) S 1 2", 100.0).is_err());
        assert!(parse_pid_stat("no parens", 100.0).is_err());
    }

    #[test]
    fn reads_live_values() {
        let me = TaskCpu::of_process(std::process::id()).unwrap();
        assert!(me.total() >= 0.0);
        // Burn a little CPU so the thread's own clock moves.
        let start = TaskCpu::of_this_thread();
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        assert!(TaskCpu::of_this_thread().since(&start).total() > 0.0);
        let m = MachineCpu::read().unwrap();
        assert!(m.busy() > 0.0 && m.idle > 0.0);
        assert!(!ksoftirqd_pids().is_empty());
    }
}
