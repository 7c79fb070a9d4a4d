//! What the machine has: memory (cgroup-aware) and cores, read through sysinfo.

use parking_lot::Mutex;
use std::sync::LazyLock;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct SystemMemory {
    pub(crate) total: u64,
    pub(crate) available: u64,
    pub(crate) used: u64,
    pub(crate) swap_total: u64,
    pub(crate) swap_used: u64,
    /// The cgroup's memory limit, when the process runs in one that sets it.
    pub(crate) cgroup_limit: Option<u64>,
    /// What the cgroup still allows.
    pub(crate) cgroup_free: Option<u64>,
}

impl SystemMemory {
    /// Total memory this process may use: the cgroup limit when lower than RAM.
    pub(crate) fn effective_total(&self) -> u64 {
        self.cgroup_limit.map_or(self.total, |l| l.min(self.total))
    }

    /// Memory available now: the cgroup's headroom when lower than free RAM.
    pub(crate) fn effective_available(&self) -> u64 {
        self.cgroup_free
            .map_or(self.available, |f| f.min(self.available))
    }
}

/// sysinfo's reader, process-wide (listed in `crate::runtime`'s doc): a cache of the
/// last reading rather than state of ours, kept next to the only code that reads it.
static SYSTEM: LazyLock<Mutex<System>> = LazyLock::new(|| Mutex::new(System::new()));

/// A fresh reading of memory only (cheap: no process or CPU scan).
pub(crate) fn memory() -> SystemMemory {
    let mut sys = SYSTEM.lock();
    sys.refresh_memory();
    let cg = sys.cgroup_limits();
    SystemMemory {
        total: sys.total_memory(),
        available: sys.available_memory(),
        used: sys.used_memory(),
        swap_total: sys.total_swap(),
        swap_used: sys.used_swap(),
        cgroup_limit: cg
            .as_ref()
            .map(|c| c.total_memory)
            .filter(|&l| l > 0 && l < sys.total_memory()),
        cgroup_free: cg
            .as_ref()
            .filter(|c| c.total_memory < sys.total_memory())
            .map(|c| c.free_memory),
    }
}

/// This process's resident and virtual size, in bytes.
pub(crate) fn process() -> (u64, u64) {
    let Ok(pid) = sysinfo::get_current_pid() else {
        return (0, 0);
    };
    let mut sys = SYSTEM.lock();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_memory(),
    );
    sys.process(pid)
        .map_or((0, 0), |p| (p.memory(), p.virtual_memory()))
}

/// How many cores' worth of CPU time other processes used lately: what the system
/// counts on every core, less this process's own, between the last two readings. Read
/// at most every 200 ms (sysinfo's `MINIMUM_CPU_UPDATE_INTERVAL`; a call in between
/// gets the last figure), so that a computation can ask before each step; 0 until two
/// readings exist, and where the system does not say.
#[cfg(not(windows))]
pub(crate) fn cores_busy_elsewhere() -> f64 {
    struct Load {
        sys: System,
        at: std::time::Instant,
        busy: f64,
    }
    // Its own reader: a CPU reading compares with the previous one of the same reader.
    static LOAD: LazyLock<Mutex<Option<Load>>> = LazyLock::new(|| Mutex::new(None));
    let Ok(pid) = sysinfo::get_current_pid() else {
        return 0.0;
    };
    let read = |sys: &mut System| {
        sys.refresh_cpu_usage();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_cpu(),
        );
    };
    let now = std::time::Instant::now();
    let mut guard = LOAD.lock();
    let load = guard.get_or_insert_with(|| {
        let mut sys = System::new();
        read(&mut sys);
        Load {
            sys,
            at: now,
            busy: 0.0,
        }
    });
    if now.duration_since(load.at) >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
        read(&mut load.sys);
        // Percentages of one core.
        let all: f64 = load
            .sys
            .cpus()
            .iter()
            .map(|c| f64::from(c.cpu_usage()))
            .sum();
        let mine = load
            .sys
            .process(pid)
            .map_or(0.0, |p| f64::from(p.cpu_usage()));
        load.busy = ((all - mine) / 100.0).max(0.0);
        load.at = now;
    }
    load.busy
}

/// The same on Windows, from the system's and this process's CPU times (GetSystemTimes,
/// GetProcessTimes). Not sysinfo's reading there: it goes through PDH performance
/// counters, and where those are missing its second reading calls PdhEnumObjectsA,
/// which Wine 8 does not implement, and Wine aborts the process (the Windows smoke test
/// under Wine died so, seen).
#[cfg(windows)]
pub(crate) fn cores_busy_elsewhere() -> f64 {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetProcessTimes, GetSystemTimes,
    };
    struct Load {
        at: std::time::Instant,
        system: u64,
        mine: u64,
        busy: f64,
    }
    static LOAD: Mutex<Option<Load>> = Mutex::new(None);
    let ticks = |f: &FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    // Busy time of every core (kernel time includes idle time) and this process's, in
    // 100 ns ticks; None where the system does not say.
    let read = || -> Option<(u64, u64)> {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut idle, mut kernel, mut user) = (zero, zero, zero);
        let (mut created, mut exited, mut pkernel, mut puser) = (zero, zero, zero, zero);
        // SAFETY: each pointer is to a local FILETIME the call writes; the process handle is
        // the pseudo-handle of this process, which needs no closing.
        let ok = unsafe {
            GetSystemTimes(&mut idle, &mut kernel, &mut user) != 0
                && GetProcessTimes(
                    GetCurrentProcess(),
                    &mut created,
                    &mut exited,
                    &mut pkernel,
                    &mut puser,
                ) != 0
        };
        ok.then(|| {
            (
                (ticks(&kernel) + ticks(&user)).saturating_sub(ticks(&idle)),
                ticks(&pkernel) + ticks(&puser),
            )
        })
    };
    let now = std::time::Instant::now();
    let mut guard = LOAD.lock();
    let Some(load) = guard.as_mut() else {
        if let Some((system, mine)) = read() {
            *guard = Some(Load {
                at: now,
                system,
                mine,
                busy: 0.0,
            });
        }
        return 0.0;
    };
    // The same pace as the other platforms' reader, so that callers see one behaviour.
    if now.duration_since(load.at) >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
        if let Some((system, mine)) = read() {
            let wall = now.duration_since(load.at).as_nanos() as f64 / 100.0;
            let others =
                system.saturating_sub(load.system) as f64 - mine.saturating_sub(load.mine) as f64;
            load.busy = (others / wall).max(0.0);
            load.at = now;
            load.system = system;
            load.mine = mine;
        }
    }
    load.busy
}

pub(crate) fn physical_cores() -> usize {
    System::physical_core_count()
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

pub(crate) fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
            // 8-bit products summed in 32 bits: what int8 embeddings' weights depend on.
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
            ("avxvnni", std::arch::is_x86_feature_detected!("avxvnni")),
        ] {
            if on {
                f.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        f.push("neon");
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            f.push("dotprod");
        }
        if std::arch::is_aarch64_feature_detected!("i8mm") {
            f.push("i8mm");
        }
    }
    f
}

/// Hand memory the process has freed back to the system. glibc keeps freed memory in
/// its heaps for reuse and only shrinks a heap from its top, so after loading a model
/// (large buffers freed) or a burst of batches (their buffers freed), most of it would
/// stay counted in the process's RSS. No effect on other C libraries.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heaps to the system; it is
    // thread-safe (it takes each arena's lock) and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
