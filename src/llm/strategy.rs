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
use crate::store::quant::{self, QuantLevel};
use crate::sysmem;

pub(crate) use crate::sysmem::physical_cores;

const GIB: u64 = 1 << 30;
pub(crate) const DEFAULT_QUANTIZATION_ENV: &str = "ORION_DEFAULT_QUANTIZATION";

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gpu {
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
    pub(crate) reasons: Vec<String>,
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / GIB as f64)
}

/// The pure decision, from measurements.
pub(crate) fn choose(
    total: u64,
    available: u64,
    cores: usize,
    gpus: Vec<Gpu>,
    forced: Option<&'static QuantLevel>,
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
    let gpu_layers = if let Some(g) = gpus.iter().find(|g| g.free_bytes >= 2 * GIB) {
        reasons.push(format!(
            "GPU {} ({}) has {} free: offload every layer",
            g.name,
            g.backend,
            gib(g.free_bytes)
        ));
        999
    } else {
        reasons.push(if gpus.is_empty() {
            "no GPU backend compiled in: CPU only".to_string()
        } else {
            "no GPU with 2 GiB free: CPU only".to_string()
        });
        0
    };
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
        reasons,
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
    let gpus = crate::llama::backend::devices()
        .into_iter()
        .map(|(name, backend, free_bytes)| Gpu {
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
        let low = choose(2 * GIB, GIB, 2, vec![], None);
        assert_eq!(
            (
                low.quantization,
                low.max_concurrent_models,
                low.context_size
            ),
            ("q4", 1, 1024)
        );
        let high = choose(8 * GIB, 6 * GIB, 4, vec![], None);
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
        let busy = choose(8 * GIB, GIB, 4, vec![], None);
        assert_eq!(busy.quantization, "q4");
        let forced = choose(8 * GIB, GIB, 4, vec![], Some(quant::level("f16").unwrap()));
        assert_eq!(forced.quantization, "f16");
        assert_eq!(choose(GIB, GIB / 2, 1, vec![], None).quantization, "q3");
    }

    #[test]
    fn a_gpu_with_room_gets_the_layers() {
        let gpu = Gpu {
            name: "GPU0".into(),
            backend: "CUDA".into(),
            free_bytes: 8 * GIB,
        };
        assert_eq!(
            choose(16 * GIB, 8 * GIB, 8, vec![gpu.clone()], None).gpu_layers,
            999
        );
        let small = Gpu {
            free_bytes: GIB,
            ..gpu
        };
        assert_eq!(
            choose(16 * GIB, 8 * GIB, 8, vec![small], None).gpu_layers,
            0
        );
    }
}
