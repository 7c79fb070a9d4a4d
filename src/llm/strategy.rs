//! The quantization and device strategy: what to run, given the machine.
//!
//! Thresholds, on the memory the process may use (RAM or a lower cgroup limit):
//!
//! | memory      | level | maxConcurrentModels | context |
//! |-------------|-------|---------------------|---------|
//! | < 1.5 GiB   | q3    | 1                   | 1024    |
//! | < 3 GiB     | q4    | 1                   | 1024    |  (the app's 2 GB profile)
//! | < 6 GiB     | q4    | 2                   | 2048    |
//! | < 12 GiB    | q8    | 2                   | 4096    |  (the app's 8 GB profile)
//! | ≥ 12 GiB    | q8    | 3                   | 4096    |
//!
//! When less than a quarter of that memory is free right now, the level steps down
//! once. A GPU backend with at least 2 GiB free gets every layer offloaded.

use crate::error::Result;
use crate::settings::{Gpu as GpuChoice, GPU_ENV};
use crate::store::quant::{self, QuantLevel};
use crate::sysmem;

pub(crate) use crate::sysmem::physical_cores;

const GIB: u64 = 1 << 30;
pub(crate) const DEFAULT_QUANTIZATION_ENV: &str = "ORION_DEFAULT_QUANTIZATION";

/// A device of a GPU backend loaded, with what its check found.
pub(crate) use crate::llama::backend::Device as Gpu;
pub(crate) use crate::llama::probe::{DeviceKind, ModuleCheck};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Strategy {
    pub(crate) quantization: &'static str,
    pub(crate) max_concurrent_models: usize,
    pub(crate) gpu_layers: u32,
    pub(crate) context_size: u32,
    pub(crate) threads: usize,
    pub(crate) total_memory: u64,
    pub(crate) available_memory: u64,
    pub(crate) cpu_features: Vec<&'static str>,
    /// The instruction sets llama.cpp's CPU backend was built for (`AVX2`, `AVX512`, ...).
    pub(crate) llama_cpu_features: Vec<String>,
    pub(crate) gpus: Vec<Gpu>,
    /// Each GPU backend module found (installed packages, `GGML_BACKEND_PATH`) and
    /// whether it loaded.
    pub(crate) gpu_modules: Vec<ModuleCheck>,
    /// Why each device of `gpus` not chosen was passed over, by ggml's device index.
    pub(crate) not_chosen: Vec<(usize, String)>,
    /// The device models are loaded on (an item of `gpus`), or `None` for the CPU.
    pub(crate) device: Option<Gpu>,
    /// Why the device asked for by name cannot be used: model loads then fail with
    /// `GPU_UNAVAILABLE` and this message.
    pub(crate) unavailable: Option<String>,
    pub(crate) reasons: Vec<String>,
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / GIB as f64)
}

/// What llama.cpp has of GPUs: the devices of the GPU backends loaded, those backends
/// (by ggml's names), and each GPU module found with what became of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Gpus {
    pub(crate) devices: Vec<Gpu>,
    pub(crate) backends: Vec<String>,
    pub(crate) modules: Vec<ModuleCheck>,
}

/// The pure decision, from measurements: `gpus` what llama.cpp has, `gpu` what the
/// process asked for.
pub(crate) fn choose(
    total: u64,
    available: u64,
    cores: usize,
    forced: Option<&'static QuantLevel>,
    gpu: GpuChoice,
    gpus: Gpus,
) -> Strategy {
    let Gpus {
        devices: gpus,
        backends,
        modules,
    } = gpus;
    let mut reasons = Vec::new();
    let (mut level, max_models, context) = match total {
        t if t < 3 * GIB / 2 => ("q3", 1, 1024),
        t if t < 3 * GIB => ("q4", 1, 1024),
        t if t < 6 * GIB => ("q4", 2, 2048),
        t if t < 12 * GIB => ("q8", 2, 4096),
        _ => ("q8", 3, 4096),
    };
    reasons.push(format!(
        "{} of memory: {level}, up to {max_models} model(s), {context}-token contexts",
        gib(total)
    ));
    if available < total / 4 {
        let smaller = match level {
            "q8" => "q4",
            _ => "q3",
        };
        if smaller != level {
            reasons.push(format!(
                "only {} free now: {smaller} instead of {level}",
                gib(available)
            ));
            level = smaller;
        }
    }
    if let Some(f) = forced {
        reasons.push(format!(
            "the default quantization (configure() or {DEFAULT_QUANTIZATION_ENV}) forces {}",
            f.name
        ));
        level = f.name;
    }
    let (device, unavailable) = choose_device(&gpus, gpu, &backends, &modules, &mut reasons);
    let not_chosen = gpus
        .iter()
        .filter(|g| device.as_ref().is_none_or(|d| d.index != g.index))
        .map(|g| (g.index, passed_over(g, gpu, device.as_ref())))
        .collect();
    let gpu_layers = if device.is_some() { 999 } else { 0 };
    reasons.push(format!("{cores} physical core(s): {cores} thread(s)"));
    Strategy {
        quantization: level,
        max_concurrent_models: max_models,
        gpu_layers,
        context_size: context,
        threads: cores,
        total_memory: total,
        available_memory: available,
        cpu_features: Vec::new(),
        llama_cpu_features: Vec::new(),
        gpus,
        gpu_modules: modules,
        not_chosen,
        device,
        unavailable,
        reasons,
    }
}

/// Why `g` is not a candidate for `auto`, or `None`.
fn not_for_auto(g: &Gpu) -> Option<String> {
    if let Some(f) = &g.failed {
        return Some(f.clone());
    }
    if g.kind == DeviceKind::Cpu {
        return Some(
            "a CPU-type device, slower than llama.cpp's own CPU backend: used only when its \
             backend is asked for by name"
                .into(),
        );
    }
    (g.room() < 2 * GIB).then(|| {
        format!(
            "{} for models (free, or held by this process's), less than 2 GiB",
            gib(g.room())
        )
    })
}

/// Why `g` is not the device chosen (`chosen`) under the setting `gpu`.
fn passed_over(g: &Gpu, gpu: GpuChoice, chosen: Option<&Gpu>) -> String {
    match gpu {
        GpuChoice::Off => format!("gpu: false (configure() or {GPU_ENV})"),
        GpuChoice::Auto => not_for_auto(g).unwrap_or_else(|| match chosen {
            Some(c) => format!(
                "{} comes first (a GPU with its own memory before one that shares the \
                 host's, a vendor's backend before Vulkan, then the most memory for models)",
                c.name
            ),
            None => "not chosen".into(),
        }),
        named => {
            if !named
                .backends()
                .iter()
                .any(|b| b.eq_ignore_ascii_case(&g.backend))
            {
                format!("gpu: '{}' asks for another backend", named.label())
            } else if let Some(f) = &g.failed {
                f.clone()
            } else {
                format!(
                    "{} is the first of its backend",
                    chosen.map_or("another", |c| c.name.as_str())
                )
            }
        }
    }
}

/// The device for `gpu` among `gpus` (every layer goes there), or the CPU; a reason for
/// the choice and for each device or module passed over in `reasons`, and for a backend
/// asked for by name that cannot be used, why.
fn choose_device(
    gpus: &[Gpu],
    gpu: GpuChoice,
    backends: &[String],
    modules: &[ModuleCheck],
    reasons: &mut Vec<String>,
) -> (Option<Gpu>, Option<String>) {
    for m in modules.iter().filter(|m| !m.loaded) {
        reasons.push(format!(
            "GPU module {}: {}",
            m.path.display(),
            m.reason.as_deref().unwrap_or("not loaded")
        ));
    }
    let loaded = if backends.is_empty() {
        "no GPU backend is loaded".to_string()
    } else {
        format!("GPU backends loaded: {}", backends.join(", "))
    };
    match gpu {
        GpuChoice::Off => {
            reasons.push(format!(
                "gpu: false (configure() or {GPU_ENV}): CPU only ({loaded})"
            ));
            (None, None)
        }
        GpuChoice::Auto => {
            // A GPU with its own memory first; then a vendor's own backend before Vulkan
            // (one NVIDIA GPU shows as both CUDA0 and Vulkan0, and CUDA runs it faster);
            // then the most memory free.
            let vendor = |b: &str| u8::from(!b.eq_ignore_ascii_case("vulkan"));
            let rank = |g: &Gpu| (g.kind == DeviceKind::Gpu, vendor(&g.backend), g.room());
            let best = gpus
                .iter()
                .filter(|g| not_for_auto(g).is_none())
                .max_by_key(|g| rank(g));
            for g in gpus {
                if let Some(why) = not_for_auto(g) {
                    reasons.push(format!("GPU {} ({}) not chosen: {why}", g.name, g.backend));
                }
            }
            if let Some(g) = best {
                reasons.push(format!(
                    "GPU {} ({}) has {} for models: the layers that fit go there",
                    g.name,
                    g.backend,
                    gib(g.room())
                ));
                (Some(g.clone()), None)
            } else {
                reasons.push(if gpus.is_empty() {
                    "no GPU device (no GPU backend is loaded, or it found no usable device): CPU only"
                        .to_string()
                } else {
                    "no GPU device fit for auto: CPU only".to_string()
                });
                (None, None)
            }
        }
        named => {
            let wanted = named.backends();
            let matching = |b: &str| wanted.iter().any(|w| w.eq_ignore_ascii_case(b));
            let of_backend: Vec<&Gpu> = gpus.iter().filter(|g| matching(&g.backend)).collect();
            if let Some(g) = of_backend.iter().find(|g| g.failed.is_none()) {
                reasons.push(format!(
                    "gpu: '{}' asked for: GPU {} ({} free), every layer",
                    named.label(),
                    g.name,
                    gib(g.free_bytes)
                ));
                return (Some((*g).clone()), None);
            }
            let module = modules.iter().find(|m| {
                !m.loaded
                    && m.path
                        .file_name()
                        .is_some_and(|f| f.to_string_lossy().to_lowercase().contains(named.label()))
            });
            let why = if let Some(g) = of_backend.first() {
                format!(
                    "its device {} failed its check: {}",
                    g.name,
                    g.failed.as_deref().unwrap_or("")
                )
            } else if backends.iter().any(|b| matching(b)) {
                format!(
                    "the {} backend is loaded but found no usable device (a driver missing \
                     or too old, or only a CPU-type device such as lavapipe, which it skips)",
                    wanted[0]
                )
            } else if let Some(m) = module {
                format!(
                    "the {} backend ({}) is {}",
                    wanted[0],
                    m.path.display(),
                    m.reason.as_deref().unwrap_or("not loaded")
                )
            } else {
                format!("no {} backend is loaded ({loaded})", wanted[0])
            };
            let msg = format!(
                "gpu: '{}' was asked for (configure() or {GPU_ENV}), but {why}. Use gpu: \
                 'auto' to run on the best device there is, the CPU included.",
                named.label()
            );
            reasons.push(format!("{msg} Models do not load until then."));
            (None, Some(msg))
        }
    }
}

/// Start llama.cpp (its modules, each GPU module's check in a child process) on a thread
/// of its own, so that the first synchronous call that needs it (the strategy) finds it
/// ready rather than waiting on the JS thread. The thread ends when llama.cpp has
/// started (a GPU check is bounded by its timeout, and stops when the process exits).
///
/// The start is counted as work (`lifecycle::begin_work`): a process that exits right
/// after its first call (an error at once, a CLI's failed lookup) would otherwise run
/// llama.cpp's static destructors while this thread is still loading its modules, and
/// crash there.
pub(crate) fn start_in_background() {
    let Ok(work) = crate::lifecycle::begin_work() else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("orion-llama-start".into())
        .spawn(move || {
            let _work = work;
            let _ = crate::llama::backend::backend();
        });
}

/// The GPU devices, with the device bytes this process's models hold on each, once
/// llama.cpp has started (never starting it: a memory reading must not load GPU
/// modules).
pub(crate) fn started_devices() -> Vec<Gpu> {
    crate::llama::backend::started_devices()
}

/// What a GPU load keeps free on its device for compute buffers: the monitor measures
/// device pressure against it.
pub(crate) const DEVICE_HEADROOM: u64 = crate::llama::fit::HEADROOM;

/// GPU backend modules (the installed GPU packages') to check and load when llama.cpp
/// starts.
pub(crate) fn offer_gpu_modules(paths: Vec<std::path::PathBuf>) {
    crate::llama::modules::offer(paths);
}

/// A GPU module's check, as JSON: what a child process started by the check runs
/// (`llama::probe`). Where llama.cpp is not built as modules, it says so.
pub(crate) fn gpu_check_json(module: &std::path::Path) -> String {
    #[cfg(ggml_dl)]
    let check = crate::llama::modules::check_here(module);
    #[cfg(not(ggml_dl))]
    let check = ModuleCheck {
        path: module.to_path_buf(),
        reason: Some("this build of the addon has llama.cpp built in, without GPU modules".into()),
        ..ModuleCheck::default()
    };
    serde_json::to_string(&check).unwrap_or_default()
}

/// The strategy for this machine now.
pub(crate) fn detect() -> Result<Strategy> {
    detect_with(true)
}

/// The strategy's memory-based choices (quantization, context size, threads) without
/// starting llama.cpp: no GPU is looked at, so no GPU module is checked on this thread.
pub(crate) fn detect_host() -> Result<Strategy> {
    detect_with(false)
}

fn detect_with(with_gpus: bool) -> Result<Strategy> {
    let mem = sysmem::memory();
    let configured = crate::settings::settings().default_quantization;
    let forced = match configured.or_else(|| std::env::var(DEFAULT_QUANTIZATION_ENV).ok()) {
        Some(v) if !v.trim().is_empty() => Some(quant::level(v.trim())?),
        _ => None,
    };
    let gpu = crate::settings::gpu()?;
    let gpus = if with_gpus {
        Gpus {
            devices: crate::llama::backend::devices(),
            backends: crate::llama::backend::gpu_backends(),
            modules: crate::llama::backend::gpu_modules().to_vec(),
        }
    } else {
        Gpus::default()
    };
    let mut s = choose(
        mem.effective_total(),
        mem.effective_available(),
        physical_cores(),
        forced,
        gpu,
        gpus,
    );
    s.cpu_features = sysmem::cpu_features();
    if with_gpus {
        s.llama_cpu_features = crate::llama::backend::cpu_features();
    }
    if !s.llama_cpu_features.is_empty() {
        s.reasons.push(format!(
            "llama.cpp's CPU backend uses {}",
            s.llama_cpu_features.join(" ")
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(total: u64, available: u64, cores: usize) -> Strategy {
        choose(
            total,
            available,
            cores,
            None,
            GpuChoice::Auto,
            Gpus::default(),
        )
    }

    fn device(index: usize, name: &str, backend: &str, kind: DeviceKind, free: u64) -> Gpu {
        Gpu {
            index,
            name: name.into(),
            backend: backend.into(),
            kind,
            total_bytes: free,
            free_bytes: free,
            models_bytes: 0,
            driver: None,
            failed: None,
        }
    }

    #[test]
    fn the_apps_two_device_profiles() {
        let low = auto(2 * GIB, GIB, 2);
        assert_eq!(
            (
                low.quantization,
                low.max_concurrent_models,
                low.context_size
            ),
            ("q4", 1, 1024)
        );
        let high = auto(8 * GIB, 6 * GIB, 4);
        assert_eq!(
            (
                high.quantization,
                high.max_concurrent_models,
                high.context_size
            ),
            ("q8", 2, 4096)
        );
        assert_eq!(high.gpu_layers, 0);
        assert!(high.reasons.iter().any(|r| r.contains("8.0 GiB")));
    }

    #[test]
    fn low_free_memory_steps_down_and_forcing_wins() {
        assert_eq!(auto(8 * GIB, GIB, 4).quantization, "q4");
        let forced = choose(
            8 * GIB,
            GIB,
            4,
            Some(quant::level("f16").unwrap()),
            GpuChoice::Auto,
            Gpus::default(),
        );
        assert_eq!(forced.quantization, "f16");
        assert_eq!(auto(GIB, GIB / 2, 1).quantization, "q3");
    }

    fn pick(
        gpus: Vec<Gpu>,
        gpu: GpuChoice,
        backends: &[&str],
        modules: &[ModuleCheck],
    ) -> Strategy {
        let gpus = Gpus {
            devices: gpus,
            backends: backends.iter().map(|b| (*b).to_string()).collect(),
            modules: modules.to_vec(),
        };
        choose(16 * GIB, 8 * GIB, 8, None, gpu, gpus)
    }

    #[test]
    fn auto_takes_the_best_gpu_never_a_cpu_type_device_nor_one_that_failed() {
        let discrete = device(1, "CUDA0 (RTX)", "CUDA", DeviceKind::Gpu, 8 * GIB);
        let integrated = device(2, "Vulkan0 (Intel)", "Vulkan", DeviceKind::Igpu, 12 * GIB);
        let lavapipe = device(3, "Vulkan1 (llvmpipe)", "Vulkan", DeviceKind::Cpu, 64 * GIB);
        let all = vec![integrated.clone(), lavapipe.clone(), discrete.clone()];
        let s = pick(all.clone(), GpuChoice::Auto, &["CUDA", "Vulkan"], &[]);
        assert_eq!((s.device.map(|d| d.index), s.gpu_layers), (Some(1), 999));
        assert!(
            s.reasons
                .iter()
                .any(|r| r
                    .starts_with("GPU Vulkan1 (llvmpipe) (Vulkan) not chosen: a CPU-type device")),
            "{:?}",
            s.reasons
        );
        // One NVIDIA GPU seen by two backends: CUDA's view, even with a little less free.
        let same_by_vulkan = device(4, "Vulkan0 (RTX)", "Vulkan", DeviceKind::Gpu, 8 * GIB + 1);
        let s = pick(
            vec![same_by_vulkan, discrete.clone()],
            GpuChoice::Auto,
            &["CUDA", "Vulkan"],
            &[],
        );
        assert_eq!(s.device.map(|d| d.index), Some(1));
        // Without the discrete GPU: the integrated one; a failed self-test rules one out.
        let s = pick(
            vec![integrated.clone(), lavapipe.clone()],
            GpuChoice::Auto,
            &["Vulkan"],
            &[],
        );
        assert_eq!(s.device.map(|d| d.index), Some(2));
        let broken = Gpu {
            failed: Some("its self-test differs".into()),
            ..discrete.clone()
        };
        let s = pick(
            vec![broken, lavapipe.clone()],
            GpuChoice::Auto,
            &["CUDA", "Vulkan"],
            &[],
        );
        assert_eq!((s.device, s.gpu_layers), (None, 0));
        assert!(s
            .reasons
            .iter()
            .any(|r| r == "GPU CUDA0 (RTX) (CUDA) not chosen: its self-test differs"));
        // Less than 2 GiB free: not for auto.
        let small = Gpu {
            free_bytes: GIB,
            ..discrete
        };
        assert_eq!(
            pick(vec![small], GpuChoice::Auto, &["CUDA"], &[]).gpu_layers,
            0
        );
    }

    #[test]
    fn the_gpu_setting_picks_a_device_or_says_why_not() {
        let vulkan = device(1, "Vulkan0 (llvmpipe)", "Vulkan", DeviceKind::Cpu, GIB);
        // Named: its device, a CPU-type one included.
        let s = pick(vec![vulkan.clone()], GpuChoice::Vulkan, &["Vulkan"], &[]);
        assert_eq!(
            (s.device.map(|d| d.index), s.gpu_layers, s.unavailable),
            (Some(1), 999, None)
        );
        // Auto: never a CPU-type device.
        let s = pick(vec![vulkan.clone()], GpuChoice::Auto, &["Vulkan"], &[]);
        assert_eq!((s.device, s.gpu_layers), (None, 0));
        // Off: the CPU, whatever is there.
        let fast = device(1, "Vulkan0", "Vulkan", DeviceKind::Gpu, 8 * GIB);
        let s = pick(vec![fast], GpuChoice::Off, &["Vulkan"], &[]);
        assert_eq!((s.device, s.gpu_layers, s.unavailable), (None, 0, None));
        assert!(s.reasons.iter().any(|r| r.starts_with("gpu: false")));
        // Named and missing: why, for GPU_UNAVAILABLE.
        let s = pick(vec![vulkan.clone()], GpuChoice::Cuda, &["Vulkan"], &[]);
        let why = s.unavailable.unwrap();
        assert!(
            why.contains("no CUDA backend is loaded (GPU backends loaded: Vulkan)"),
            "{why}"
        );
        let s = pick(vec![], GpuChoice::Vulkan, &["Vulkan"], &[]);
        let why = s.unavailable.unwrap();
        assert!(
            why.contains("the Vulkan backend is loaded but found no usable device"),
            "{why}"
        );
        let s = pick(vec![], GpuChoice::Metal, &[], &[]);
        assert!(s
            .unavailable
            .unwrap()
            .contains("no MTL backend is loaded (no GPU backend is loaded)"));
        // Named, its module not loaded: the module's reason.
        let crashed = ModuleCheck {
            path: "/x/libggml-vulkan.so".into(),
            reason: Some("not loaded: it crashed while being checked (signal 11, SIGSEGV)".into()),
            ..ModuleCheck::default()
        };
        let s = pick(
            vec![],
            GpuChoice::Vulkan,
            &[],
            std::slice::from_ref(&crashed),
        );
        let why = s.unavailable.unwrap();
        assert!(
            why.contains("the Vulkan backend (/x/libggml-vulkan.so) is not loaded: it crashed while being checked"),
            "{why}"
        );
        assert!(s
            .reasons
            .iter()
            .any(|r| r.starts_with("GPU module /x/libggml-vulkan.so: not loaded: it crashed")));
        // Named, its device failed the self-test.
        let failed = Gpu {
            failed: Some("its self-test did not run".into()),
            ..vulkan
        };
        let why = pick(vec![failed], GpuChoice::Vulkan, &["Vulkan"], &[])
            .unavailable
            .unwrap();
        assert!(
            why.contains(
                "its device Vulkan0 (llvmpipe) failed its check: its self-test did not run"
            ),
            "{why}"
        );
    }
}
