//! The check a GPU backend module passes before the process loads it: in a child
//! process, ggml loads the module, lists its devices and runs a small graph on each,
//! compared with the CPU backend's result. A broken driver can crash or hang inside
//! `dlopen` or the driver's first call, where nothing in this process could catch it;
//! the child takes that fall, and the process records why and runs on the CPU.
//! node-llama-cpp tests its prebuilt binaries in a child process for the same reason.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a device is, as the backend and its driver say: a GPU with its own memory, one
/// that shares the host's, or a CPU-type device (Mesa's lavapipe, `SwiftShader`), which
/// runs models slower than llama.cpp's CPU backend and is used only when asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeviceKind {
    Gpu,
    Igpu,
    Cpu,
}

impl DeviceKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Gpu => "gpu",
            Self::Igpu => "igpu",
            Self::Cpu => "cpu",
        }
    }
}

/// One device of a GPU backend, as its check found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceCheck {
    /// ggml's name (`Vulkan0`, `CUDA0`): the same in the child and in this process.
    pub(crate) name: String,
    /// The device's own name (`NVIDIA GeForce RTX 4070`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub(crate) description: String,
    pub(crate) kind: DeviceKind,
    pub(crate) total_bytes: u64,
    pub(crate) free_bytes: u64,
    /// The driver and its version, where the API says (Vulkan's driver properties).
    pub(crate) driver: Option<String>,
    /// How long the small graph took on the device, and the largest difference from
    /// the CPU's result (relative to the largest value).
    pub(crate) self_test_ms: Option<f64>,
    pub(crate) self_test_error: Option<f64>,
    /// Why the device cannot be used (the self-test failed or could not run).
    pub(crate) failed: Option<String>,
}

/// What became of one GPU backend module.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModuleCheck {
    pub(crate) path: PathBuf,
    /// ggml's name of the backend (`Vulkan`, `CUDA`), once it registered.
    pub(crate) backend: Option<String>,
    /// Whether this process loaded it.
    pub(crate) loaded: bool,
    /// Why it is not loaded.
    pub(crate) reason: Option<String>,
    pub(crate) devices: Vec<DeviceCheck>,
}

/// Largest relative difference the self-test accepts: GPU backends may compute in
/// 16-bit floats (about 3 decimal digits), and sums of 256 products round further.
#[cfg(ggml_dl)]
const SELF_TEST_TOLERANCE: f64 = 2e-2;

#[cfg(ggml_dl)]
pub(crate) use dl::{in_child, run, CHILD_ENV};

#[cfg(ggml_dl)]
mod dl {
    use super::{DeviceCheck, DeviceKind, ModuleCheck, SELF_TEST_TOLERANCE};
    use llama_cpp_sys_2 as sys;
    use std::ffi::CStr;
    use std::io::Read;
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// How long a check may take: a driver's first use compiles its pipelines, a few
    /// seconds at most on the slowest device seen (lavapipe); past this the device is
    /// taken to hang.
    const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

    /// Set in the check's child: a process with it checks no GPU module of its own. Where
    /// the host executable does not run `-e` as Node would (an Electron app with its
    /// `RunAsNode` fuse off starts itself instead), this keeps the app it started from
    /// starting checks in turn.
    pub(crate) const CHILD_ENV: &str = "ORION_GPU_CHECK_CHILD";

    /// `node -e <script> <addon> <module>`: the host executable runs the check as Node,
    /// in a process of its own, its output piped back.
    fn check_command(exe: &Path, addon: &Path, module: &Path) -> std::process::Command {
        // The two paths are process.argv[1] and [2].
        let script = "const [, addon, module] = process.argv; \
                      process.stdout.write(require(addon).__gpuCheck(module))";
        let mut command = std::process::Command::new(exe);
        command
            .arg("-e")
            .arg(script)
            .arg(addon)
            .arg(module)
            // Electron runs as plain Node with this; node ignores it.
            .env("ELECTRON_RUN_AS_NODE", "1")
            .env(CHILD_ENV, "1")
            // Preloads (`--require`) would run the app's code, and could print to stdout.
            .env_remove("NODE_OPTIONS")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group: whatever it starts is stopped with it.
            command.process_group(0);
        }
        #[cfg(windows)]
        {
            use std::os::windows::process::CommandExt;
            // CREATE_NO_WINDOW: node.exe is a console program, and started from a
            // process without a console (a service, an app started from a shortcut)
            // it would open a console window of its own for the check.
            command.creation_flags(0x0800_0000);
        }
        command
    }

    /// The check, in a child process: the host executable (node, or Electron as node)
    /// loads this addon and calls its `__gpuCheck`, which runs [`run`] and prints the
    /// result as JSON. An error says why there is no result (crashed, timed out, could
    /// not start).
    pub(crate) fn in_child(module: &Path) -> Result<ModuleCheck, String> {
        let addon = crate::paths::addon_path()
            .ok_or("the addon's own file is unknown, so no child process can load it")?;
        let exe = std::env::current_exe()
            .map_err(|e| format!("the executable running this process is unknown ({e})"))?;
        let mut command = check_command(&exe, &addon, module);
        let mut child = command
            .spawn()
            .map_err(|e| format!("could not start {} to check it ({e})", exe.display()))?;
        // Read both pipes on threads, so that a chatty driver cannot fill one and stall
        // the child while this waits.
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped")));
        let err = drain(Box::new(child.stderr.take().expect("piped")));
        let started = Instant::now();
        #[cfg(unix)]
        let group = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group, the child's
        // own (process_group(0) above); an already empty group is ESRCH, ignored.
        #[cfg(unix)]
        let stop_group = |_: &mut std::process::Child| unsafe {
            libc::kill(-group, libc::SIGKILL);
        };
        // On Windows, a job object holds the child and whatever it starts (a driver's
        // helper, Electron's crash handler), all stopped together, and stopped too if
        // this process ends first (the job's last handle closes with it).
        #[cfg(windows)]
        let job = job::Job::around(&child);
        #[cfg(windows)]
        let stop_group = |child: &mut std::process::Child| match &job {
            Some(job) => job.stop(),
            None => {
                let _ = child.kill();
            }
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                // The process is exiting: llama.cpp starting in the background is
                // waited for by the exit, so the check must not hold it up.
                Ok(None) if crate::lifecycle::is_shut_down() => {
                    stop_group(&mut child);
                    let _ = child.wait();
                    return Err("its check was stopped: the process is exiting".into());
                }
                Ok(None) if started.elapsed() < CHECK_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    stop_group(&mut child);
                    let _ = child.wait();
                    return Err(format!(
                        "its check did not finish in {} s (a driver that hangs?), so it was stopped",
                        CHECK_TIMEOUT.as_secs()
                    ));
                }
                Err(e) => {
                    stop_group(&mut child);
                    let _ = child.wait();
                    return Err(format!("its check could not be waited for ({e})"));
                }
            }
        };
        // Anything the check left running goes with it.
        stop_group(&mut child);
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        let tail = || {
            let s = String::from_utf8_lossy(&err);
            let s = s.trim();
            let cut = s.len().saturating_sub(600);
            let cut = (cut..=s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(0);
            if s.is_empty() {
                String::new()
            } else {
                format!(": {}", &s[cut..])
            }
        };
        if !status.success() {
            return Err(match crash(status) {
                Some(how) => format!(
                    "it crashed while being checked ({how}), a broken or incompatible \
                     driver{}",
                    tail()
                ),
                None => format!("its check failed ({status}){}", tail()),
            });
        }
        serde_json::from_slice(&out)
            .map_err(|e| format!("its check printed no result ({e}){}", tail()))
    }

    /// How a process that crashed ended: its signal on Unix, the exception's NTSTATUS
    /// on Windows; None for an ordinary exit.
    #[cfg(unix)]
    fn crash(status: std::process::ExitStatus) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        let sig = status.signal()?;
        let name = match sig {
            libc::SIGSEGV => ", SIGSEGV",
            libc::SIGABRT => ", SIGABRT",
            libc::SIGBUS => ", SIGBUS",
            libc::SIGILL => ", SIGILL",
            libc::SIGFPE => ", SIGFPE",
            libc::SIGKILL => ", SIGKILL",
            _ => "",
        };
        Some(format!("signal {sig}{name}"))
    }

    /// A Windows job object that stops every process in it when told to, or when its
    /// last handle closes (this process ending).
    #[cfg(windows)]
    mod job {
        use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
        use windows_sys::Win32::System::JobObjects::{
            AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
            SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
            JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
        };

        pub(super) struct Job(HANDLE);

        impl Job {
            /// A job holding `child` (and what it starts from now on); None where
            /// Windows refuses one, and then the child alone is stopped.
            pub(super) fn around(child: &std::process::Child) -> Option<Self> {
                use std::os::windows::io::AsRawHandle;
                // SAFETY: no name and default security: a new anonymous job.
                let job = Self(unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) });
                if job.0.is_null() {
                    return None;
                }
                // SAFETY: plain C data for which all-zero is valid.
                let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
                info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
                // SAFETY: `job` is open; `info` is the structure this class takes, and
                // lives across the call; the child's handle is open while `child` lives.
                let ok = unsafe {
                    SetInformationJobObject(
                        job.0,
                        JobObjectExtendedLimitInformation,
                        (&raw const info).cast(),
                        u32::try_from(std::mem::size_of_val(&info)).unwrap_or(u32::MAX),
                    ) != 0
                        && AssignProcessToJobObject(job.0, child.as_raw_handle().cast()) != 0
                };
                ok.then_some(job)
            }

            /// Stops every process in the job.
            pub(super) fn stop(&self) {
                // SAFETY: `self.0` is an open job handle.
                unsafe { TerminateJobObject(self.0, 1) };
            }
        }

        impl Drop for Job {
            fn drop(&mut self) {
                // SAFETY: opened in `around`, closed once.
                unsafe { CloseHandle(self.0) };
            }
        }
    }

    /// As above: Windows ends a process that raised an exception with its code.
    #[cfg(not(unix))]
    fn crash(status: std::process::ExitStatus) -> Option<String> {
        // The exit code's bits (NTSTATUS codes are read as unsigned).
        let code = u32::from_ne_bytes(status.code()?.to_ne_bytes());
        let name = match code {
            0xC000_0005 => "access violation",
            0xC000_001D => "illegal instruction",
            0xC000_0094 => "integer division by zero",
            0xC000_00FD => "stack overflow",
            0xC000_0409 => "fail fast (abort)",
            // abort() in MinGW's C runtime
            3 => "abort",
            _ => return (code >= 0xC000_0000).then(|| format!("exception {code:#010X}")),
        };
        Some(format!("{name}, {code:#X}"))
    }

    /// The check itself, run in the child once the CPU backend is loaded (for the
    /// reference result): the module, its devices, and the small graph on each.
    pub(crate) fn run(module: &Path) -> ModuleCheck {
        let mut check = ModuleCheck {
            path: module.to_path_buf(),
            ..ModuleCheck::default()
        };
        // Opened first, for the loader's own words when it fails (a missing
        // libvulkan.so.1 or vulkan-1.dll, libcudart.so.12).
        let handle = match super::super::modules::open(module) {
            Ok(handle) => handle,
            Err(why) => {
                // Windows' words for a missing import do not name it.
                #[cfg(windows)]
                let why = if why.contains("os error 126") {
                    format!("{why}: a DLL it imports (vulkan-1.dll, CUDA's) is missing")
                } else {
                    why
                };
                check.reason = Some(format!("the module does not load: {why}"));
                return check;
            }
        };
        // The Vulkan driver's own account of its devices: their types (ggml does not
        // say which are CPU-type) and driver versions.
        let is_vulkan = module.to_string_lossy().contains("vulkan");
        let vulkan = if is_vulkan {
            super::super::vulkan::physical_devices()
        } else {
            Vec::new()
        };
        let reg = match super::super::modules::register(handle) {
            Ok(reg) => reg,
            Err(why) => {
                // ggml-vulkan registers nothing when the loader has no driver to create
                // an instance with: say so, and what would help.
                let hint = if is_vulkan && vulkan.is_empty() {
                    "; the Vulkan loader finds no device: no Vulkan driver is installed, or \
                     none sees a GPU (install the GPU's Vulkan driver, its vendor's or Mesa's)"
                } else {
                    ""
                };
                check.reason = Some(format!(
                    "ggml could not register it as a backend: {why}{hint}"
                ));
                return check;
            }
        };
        // SAFETY: `reg` is a registered backend; its name is a static string.
        check.backend = Some(
            unsafe { CStr::from_ptr(sys::ggml_backend_reg_name(reg)) }
                .to_string_lossy()
                .into_owned(),
        );
        check.loaded = true;
        // SAFETY: `reg` is registered; indices below its count are its devices.
        for i in 0..unsafe { sys::ggml_backend_reg_dev_count(reg) } {
            // SAFETY: as above.
            let dev = unsafe { sys::ggml_backend_reg_dev_get(reg, i) };
            check.devices.push(device(dev, &vulkan));
        }
        check
    }

    /// A device's facts and the self-test's result.
    fn device(
        dev: sys::ggml_backend_dev_t,
        vulkan: &[super::super::vulkan::Physical],
    ) -> DeviceCheck {
        // SAFETY: `props` is plain C data for which all-zero is valid; `dev` is a device
        // of a registered backend, which fills it with static strings.
        let mut props: sys::ggml_backend_dev_props = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `props` is writable.
        unsafe { sys::ggml_backend_dev_get_props(dev, &raw mut props) };
        let text = |p: *const std::os::raw::c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: non-null: a NUL-terminated string of the device's.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let description = text(props.description);
        let physical = vulkan
            .iter()
            .find(|p| !p.name.is_empty() && description.starts_with(&p.name));
        let kind = match (physical.map(|p| p.kind), props.type_) {
            (Some(k), _) => k,
            (None, sys::GGML_BACKEND_DEVICE_TYPE_IGPU) => DeviceKind::Igpu,
            (None, sys::GGML_BACKEND_DEVICE_TYPE_CPU) => DeviceKind::Cpu,
            _ => DeviceKind::Gpu,
        };
        let mut d = DeviceCheck {
            name: text(props.name),
            description,
            kind,
            total_bytes: props.memory_total as u64,
            free_bytes: props.memory_free as u64,
            driver: physical.map(|p| p.driver.clone()).filter(|d| !d.is_empty()),
            self_test_ms: None,
            self_test_error: None,
            failed: None,
        };
        let started = Instant::now();
        match self_test(dev) {
            Ok(err) => {
                d.self_test_ms = Some(started.elapsed().as_secs_f64() * 1e3);
                d.self_test_error = Some(err);
                // NaN fails too.
                if err.is_nan() || err > SELF_TEST_TOLERANCE {
                    d.failed = Some(format!(
                        "its self-test differs from the CPU's result by {err:.3} (relative), \
                         more than {SELF_TEST_TOLERANCE}: wrong results, a driver bug?"
                    ));
                }
            }
            Err(e) => d.failed = Some(format!("its self-test did not run: {e}")),
        }
        d
    }

    /// A matrix product (32×256 by 256×16) on `dev` and on the CPU; the
    /// largest difference relative to the largest value.
    fn self_test(dev: sys::ggml_backend_dev_t) -> Result<f64, String> {
        const K: usize = 256;
        const M: usize = 32;
        const N: usize = 16;
        // Values of both signs and several magnitudes, the same on every run.
        let a: Vec<f32> = (0..K * M)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let b: Vec<f32> = (0..K * N)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 88.0)
            .collect();
        // SAFETY: a registered backend's device; null params ask for defaults.
        let gpu = unsafe { sys::ggml_backend_dev_init(dev, std::ptr::null()) };
        if gpu.is_null() {
            return Err("the device did not start".into());
        }
        // SAFETY: the CPU backend was loaded first.
        let cpu = unsafe {
            sys::ggml_backend_init_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU, std::ptr::null())
        };
        if cpu.is_null() {
            // SAFETY: started above, freed once.
            unsafe { sys::ggml_backend_free(gpu) };
            return Err("no CPU backend to compare with".into());
        }
        let device_result = product(gpu, &a, &b, K, M, N);
        let cpu_result = product(cpu, &a, &b, K, M, N);
        // SAFETY: each started above, freed once, after its graph's buffers.
        unsafe {
            sys::ggml_backend_free(gpu);
            sys::ggml_backend_free(cpu);
        }
        let (g, c) = (device_result?, cpu_result?);
        let scale = c
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        Ok(g.iter()
            .zip(&c)
            .map(|(x, y)| {
                if x.is_finite() {
                    f64::from((x - y).abs() / scale)
                } else {
                    f64::INFINITY
                }
            })
            .fold(0.0, f64::max))
    }

    /// a·bᵀ computed by `backend`.
    #[allow(clippy::many_single_char_names)] // the usual names of a matrix product
    fn product(
        backend: sys::ggml_backend_t,
        a: &[f32],
        b: &[f32],
        k: usize,
        m: usize,
        n: usize,
    ) -> Result<Vec<f32>, String> {
        // SAFETY: overheads are pure functions.
        let size = unsafe { 8 * sys::ggml_tensor_overhead() + sys::ggml_graph_overhead() };
        let params = sys::ggml_init_params {
            mem_size: size,
            mem_buffer: std::ptr::null_mut(),
            // Tensors' data go in the backend's buffer, allocated below.
            no_alloc: true,
        };
        // SAFETY: `params` asks for a context of `size` bytes holding metadata only.
        let ctx = unsafe { sys::ggml_init(params) };
        if ctx.is_null() {
            return Err("no ggml context".into());
        }
        // SAFETY: `ctx` is live until freed at the end; tensors and the graph are
        // created in it; the buffer holds the tensors' data; sizes match the vectors
        // (f32, k×m, k×n, m×n).
        unsafe {
            let ta = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, k as i64, m as i64);
            let tb = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, k as i64, n as i64);
            let out = sys::ggml_mul_mat(ctx, ta, tb);
            let graph = sys::ggml_new_graph(ctx);
            sys::ggml_build_forward_expand(graph, out);
            let buf = sys::ggml_backend_alloc_ctx_tensors(ctx, backend);
            if buf.is_null() {
                sys::ggml_free(ctx);
                return Err("no device memory for a few kilobytes".into());
            }
            sys::ggml_backend_tensor_set(ta, a.as_ptr().cast(), 0, std::mem::size_of_val(a));
            sys::ggml_backend_tensor_set(tb, b.as_ptr().cast(), 0, std::mem::size_of_val(b));
            let status = sys::ggml_backend_graph_compute(backend, graph);
            let mut result = vec![0f32; m * n];
            if status == sys::GGML_STATUS_SUCCESS {
                sys::ggml_backend_tensor_get(
                    out,
                    result.as_mut_ptr().cast(),
                    0,
                    std::mem::size_of_val(result.as_slice()),
                );
            }
            sys::ggml_backend_buffer_free(buf);
            sys::ggml_free(ctx);
            if status == sys::GGML_STATUS_SUCCESS {
                Ok(result)
            } else {
                Err(format!("the graph failed (ggml status {status})"))
            }
        }
    }
}
