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

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gpu {
    /// ggml's index of the device (what a model load names).
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) backend: String,
    pub(crate) free_bytes: u64,
}

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

/// The pure decision, from measurements: `gpus` are the devices of the GPU backends
/// loaded (`backends`, by ggml's names), `gpu` what the process asked for.
pub(crate) fn choose(
    total: u64,
    available: u64,
    cores: usize,
    gpus: Vec<Gpu>,
    forced: Option<&'static QuantLevel>,
    gpu: GpuChoice,
    backends: &[String],
) -> Strategy {
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
    let (device, unavailable) = choose_device(&gpus, gpu, backends, &mut reasons);
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
        device,
        unavailable,
        reasons,
    }
}

/// The device for `gpu` among `gpus` (every layer goes there), or the CPU; a reason for
/// the choice in `reasons`, and for a backend asked for by name that has no device, why.
fn choose_device(
    gpus: &[Gpu],
    gpu: GpuChoice,
    backends: &[String],
    reasons: &mut Vec<String>,
) -> (Option<Gpu>, Option<String>) {
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
            if let Some(g) = gpus.iter().find(|g| g.free_bytes >= 2 * GIB) {
                reasons.push(format!(
                    "GPU {} ({}) has {} free: offload every layer",
                    g.name,
                    g.backend,
                    gib(g.free_bytes)
                ));
                (Some(g.clone()), None)
            } else {
                reasons.push(if gpus.is_empty() {
                    "no GPU device (no GPU backend is loaded, or it found no usable device): CPU only"
                        .to_string()
                } else {
                    "no GPU with 2 GiB free: CPU only".to_string()
                });
                (None, None)
            }
        }
        named => {
            let wanted = named.backends();
            let matching = |b: &str| wanted.iter().any(|w| w.eq_ignore_ascii_case(b));
            if let Some(g) = gpus.iter().find(|g| matching(&g.backend)) {
                reasons.push(format!(
                    "gpu: '{}' asked for: GPU {} ({} free), every layer",
                    named.label(),
                    g.name,
                    gib(g.free_bytes)
                ));
                return (Some(g.clone()), None);
            }
            let why = if backends.iter().any(|b| matching(b)) {
                format!(
                    "the {} backend is loaded but found no usable device (a driver missing \
                     or too old, or only a CPU-type device such as lavapipe, which it skips)",
                    wanted[0]
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

/// The strategy for this machine now.
pub(crate) fn detect() -> Result<Strategy> {
    let mem = sysmem::memory();
    let configured = crate::settings::settings().default_quantization;
    let forced = match configured.or_else(|| std::env::var(DEFAULT_QUANTIZATION_ENV).ok()) {
        Some(v) if !v.trim().is_empty() => Some(quant::level(v.trim())?),
        _ => None,
    };
    let gpu = crate::settings::gpu()?;
    let gpus = crate::llama::backend::devices()
        .into_iter()
        .map(|(index, name, backend, free_bytes)| Gpu {
            index,
            name,
            backend,
            free_bytes,
        })
        .collect();
    let mut s = choose(
        mem.effective_total(),
        mem.effective_available(),
        physical_cores(),
        gpus,
        forced,
        gpu,
        &crate::llama::backend::gpu_backends(),
    );
    s.cpu_features = sysmem::cpu_features();
    s.llama_cpu_features = crate::llama::backend::cpu_features();
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

    #[test]
    fn the_apps_two_device_profiles() {
        let low = choose(2 * GIB, GIB, 2, vec![], None, GpuChoice::Auto, &[]);
        assert_eq!(
            (
                low.quantization,
                low.max_concurrent_models,
                low.context_size
            ),
            ("q4", 1, 1024)
        );
        let high = choose(8 * GIB, 6 * GIB, 4, vec![], None, GpuChoice::Auto, &[]);
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
        let busy = choose(8 * GIB, GIB, 4, vec![], None, GpuChoice::Auto, &[]);
        assert_eq!(busy.quantization, "q4");
        let forced = choose(
            8 * GIB,
            GIB,
            4,
            vec![],
            Some(quant::level("f16").unwrap()),
            GpuChoice::Auto,
            &[],
        );
        assert_eq!(forced.quantization, "f16");
        assert_eq!(
            choose(GIB, GIB / 2, 1, vec![], None, GpuChoice::Auto, &[]).quantization,
            "q3"
        );
    }

    #[test]
    fn a_gpu_with_room_gets_the_layers() {
        let gpu = Gpu {
            index: 1,
            name: "GPU0".into(),
            backend: "CUDA".into(),
            free_bytes: 8 * GIB,
        };
        assert_eq!(
            choose(
                16 * GIB,
                8 * GIB,
                8,
                vec![gpu.clone()],
                None,
                GpuChoice::Auto,
                &[]
            )
            .gpu_layers,
            999
        );
        let small = Gpu {
            free_bytes: GIB,
            ..gpu
        };
        assert_eq!(
            choose(
                16 * GIB,
                8 * GIB,
                8,
                vec![small],
                None,
                GpuChoice::Auto,
                &[]
            )
            .gpu_layers,
            0
        );
    }

    #[test]
    fn the_gpu_setting_picks_a_device_or_says_why_not() {
        let vulkan = Gpu {
            index: 1,
            name: "Vulkan0 (llvmpipe)".into(),
            backend: "Vulkan".into(),
            free_bytes: GIB,
        };
        let pick = |gpus: Vec<Gpu>, gpu, backends: &[&str]| {
            let backends: Vec<String> = backends.iter().map(|b| (*b).to_string()).collect();
            choose(16 * GIB, 8 * GIB, 8, gpus, None, gpu, &backends)
        };
        // Named: its device, even with less than auto's 2 GiB.
        let s = pick(vec![vulkan.clone()], GpuChoice::Vulkan, &["Vulkan"]);
        assert_eq!(
            (s.device.map(|d| d.index), s.gpu_layers, s.unavailable),
            (Some(1), 999, None)
        );
        // Auto: not below 2 GiB free.
        let s = pick(vec![vulkan.clone()], GpuChoice::Auto, &["Vulkan"]);
        assert_eq!((s.device, s.gpu_layers), (None, 0));
        // Off: the CPU, whatever is there.
        let s = pick(
            vec![Gpu {
                free_bytes: 8 * GIB,
                ..vulkan.clone()
            }],
            GpuChoice::Off,
            &["Vulkan"],
        );
        assert_eq!((s.device, s.gpu_layers, s.unavailable), (None, 0, None));
        assert!(s.reasons.iter().any(|r| r.starts_with("gpu: false")));
        // Named and missing: why, for GPU_UNAVAILABLE.
        let s = pick(vec![vulkan.clone()], GpuChoice::Cuda, &["Vulkan"]);
        let why = s.unavailable.unwrap();
        assert!(
            why.contains("no CUDA backend is loaded (GPU backends loaded: Vulkan)"),
            "{why}"
        );
        let s = pick(vec![], GpuChoice::Vulkan, &["Vulkan"]);
        let why = s.unavailable.unwrap();
        assert!(
            why.contains("the Vulkan backend is loaded but found no usable device"),
            "{why}"
        );
        let s = pick(vec![], GpuChoice::Metal, &[]);
        assert!(s
            .unavailable
            .unwrap()
            .contains("no MTL backend is loaded (no GPU backend is loaded)"));
    }
}
