//! llama.cpp behind the loader's [`Engine`] trait: the process's one backend, GGUF
//! header probing, model loading with progress, and creating contexts one at a time
//! (llama.cpp's context creation mutates the model, so concurrent creation is unsound).

use super::backend::backend;
use crate::engine::llm::{DeviceNeed, Engine, Layout, LoadRequest, ModelMeta, Placed, Progress};
use crate::error::{OrionError, Result};
use crate::store::gguf_check;
use llama_cpp_2::gguf::GgufContext;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use std::path::Path;

/// Where a model's layers go: decided at each load (the GPU choice can change with
/// `configure()`), by whoever built the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Placement {
    /// ggml's index of the GPU device, or `None` for the CPU alone (no device at all:
    /// llama.cpp then sends no work to a GPU backend, not even large batches). As many
    /// layers as fit its memory go there ([`super::fit`]), or the load's `gpuLayers`.
    pub(crate) device: Option<usize>,
}

/// Decides a load's [`Placement`]; an error (the device asked for is unavailable)
/// fails the load.
pub(crate) type Place = std::sync::Arc<dyn Fn() -> Result<Placement> + Send + Sync>;

/// A GGUF file's size and hyperparameters, once everything llama.cpp would assert on
/// (and abort the process for) is checked, in Rust, and gguf.cpp has read the header.
/// Starts llama.cpp's backend.
pub(crate) fn checked(path: &Path) -> Result<(u64, gguf_check::Hparams)> {
    let file_bytes = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            return Err(OrionError::ModelLoadFailed(format!(
                "{} is not a file",
                path.display()
            )))
        }
        Err(_) => {
            return Err(OrionError::ModelNotFound {
                what: format!(
                    "model file `{}`",
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                ),
                searched: path
                    .parent()
                    .map_or_else(String::new, |p| p.display().to_string()),
            })
        }
    };
    // llama.cpp asserts on header values it cannot use, and an assert aborts the
    // whole process: every such value is checked here, in Rust, first.
    let hparams = gguf_check::check_file(path).map_err(|e| {
        OrionError::ModelLoadFailed(format!("{} has a bad GGUF header: {e}", path.display()))
    })?;
    backend()?;
    // gguf.cpp's own checks (tensor types, offsets, sizes) fail without aborting.
    GgufContext::from_file(path).ok_or_else(|| {
        OrionError::ModelLoadFailed(format!(
            "{} is not a readable GGUF file (bad or truncated header)",
            path.display()
        ))
    })?;
    Ok((file_bytes, hparams))
}

#[derive(Clone)]
pub(crate) struct LlamaEngine {
    pub(crate) place: Place,
}

impl Default for LlamaEngine {
    /// The CPU alone.
    fn default() -> Self {
        Self {
            place: std::sync::Arc::new(|| Ok(Placement::default())),
        }
    }
}

impl Engine for LlamaEngine {
    type Model = super::prefix::ChatModel;

    fn probe(&self, path: &Path, context_length: u32) -> Result<ModelMeta> {
        let (file_bytes, hparams) = checked(path)?;
        // Generation never uses more than the trained length (see `LocalUse`).
        let context_length = match hparams.n_ctx_train {
            0 => context_length,
            trained => context_length.min(trained),
        };
        // K and V, f16, for every layer and position of one context.
        let kv = hparams.kv_cache_bytes(context_length).ok_or_else(|| {
            OrionError::ModelLoadFailed(format!(
                "{}: a KV cache of {context_length} tokens for {} layers overflows 64 bits",
                path.display(),
                hparams.n_layer
            ))
        })?;
        // Each layer's share of that cache, where the layer goes.
        let kv_per_token: Vec<u64> = hparams
            .kv_per_layer
            .iter()
            .map(|values| values.saturating_mul(2))
            .collect();
        let kv_bytes = kv_per_token
            .iter()
            .map(|b| b.saturating_mul(context_length.into()))
            .collect();
        Ok(ModelMeta {
            file_bytes,
            kv_bytes_per_context: kv,
            quantization: hparams.quantization,
            layout: Layout {
                layer_bytes: hparams.layer_bytes,
                kv_bytes,
                kv_per_token,
                output_bytes: hparams.output_bytes,
                headroom: super::fit::headroom(hparams.n_vocab),
            },
        })
    }

    fn load(
        &self,
        path: &Path,
        request: LoadRequest,
        mut progress: Progress,
    ) -> Result<super::prefix::ChatModel> {
        let backend = backend()?;
        // The device memory is taken now, before the load: a concurrent load to the same
        // device fits what is left. Given back if the load fails.
        let placed = match request.device {
            Some(device) => Some(place_layers(device, &request)?),
            None => None,
        }
        // No device at all when no layer goes there.
        .filter(|(p, _)| p.gpu_layers > 0);
        let devices: Vec<usize> = placed
            .as_ref()
            .map(|(p, _)| p.device_index)
            .into_iter()
            .collect();
        let params = LlamaModelParams::default()
            .with_devices(&devices)
            .map_err(|e| OrionError::ModelLoadFailed(format!("{}: {e}", path.display())))?
            .with_use_mmap(true)
            .with_n_gpu_layers(placed.as_ref().map_or(0, |(p, _)| p.gpu_layers))
            .with_progress_callback(move |f| {
                progress(f);
                // false makes llama.cpp abandon the load: the process is exiting.
                !crate::lifecycle::is_shut_down()
            });
        let model = LlamaModel::load_from_file(backend, path, &params).map_err(|e| {
            if crate::lifecycle::is_shut_down() {
                return OrionError::ShutDown;
            }
            OrionError::ModelLoadFailed(format!("llama.cpp could not load {}: {e}", path.display()))
        })?;
        crate::lifecycle::shutdown_before_later_destructors(crate::lifecycle::Library::LlamaCpp);
        let (placed, share) = placed.unzip();
        // Each context's KV cache on the device, held by the context (see `fit::ContextKv`).
        let l = &request.layout;
        let context_kv = placed.as_ref().map(|p| super::fit::ContextKv {
            device: p.device_index,
            per_token: super::fit::kv_on_device(&l.kv_per_token, p.gpu_layers),
            reserve: super::fit::kv_on_device(&l.kv_bytes, p.gpu_layers),
            headroom: l.headroom,
        });
        Ok(super::prefix::ChatModel::new(
            model, placed, share, context_kv,
        ))
    }

    fn placed(model: &super::prefix::ChatModel) -> Option<Placed> {
        model.placed.clone()
    }

    fn free_kept(model: &super::prefix::ChatModel) -> usize {
        model.contexts.clear(None)
    }

    fn stop_kept(model: &super::prefix::ChatModel) {
        model.contexts.stop_settling();
    }

    fn facts(model: &super::prefix::ChatModel) -> crate::engine::llm::ModelFacts {
        super::facts::facts(model)
    }

    fn device_need(&self, meta: &ModelMeta, gpu_layers: Option<u32>) -> Result<Option<DeviceNeed>> {
        // The setting decides (and fails the load for a backend asked for that has no
        // device), once per load.
        let Some(index) = (self.place)()?.device else {
            return Ok(None);
        };
        if gpu_layers == Some(0) {
            return Ok(None);
        }
        let l = &meta.layout;
        let layers = gpu_layers.unwrap_or(l.layer_bytes.len() as u32 + 1);
        Ok(Some(DeviceNeed {
            index,
            bytes: super::fit::bytes_for(&l.layer_bytes, &l.kv_bytes, l.output_bytes, layers)
                .saturating_add(l.headroom),
        }))
    }

    fn device_free(&self, index: usize) -> u64 {
        super::backend::device(index).map_or(0, |d| {
            super::fit::free_for_models(d.free_bytes, d.total_bytes, super::fit::held(index))
        })
    }
}

/// How many of the model's layers go to `device`: the load's `gpuLayers`, else as many
/// as fit what is free there for models ([`super::fit`]); with the device memory they
/// take (and one context's KV cache), held from now on.
fn place_layers(device: usize, request: &LoadRequest) -> Result<(Placed, super::fit::DeviceShare)> {
    let l = &request.layout;
    let n_layer = l.layer_bytes.len() as u32;
    let d = super::backend::device(device)
        .ok_or_else(|| OrionError::GpuUnavailable(format!("GPU device {device} is gone")))?;
    let held = super::fit::held(device);
    let free = super::fit::free_for_models(d.free_bytes, d.total_bytes, held);
    let all = n_layer + 1;
    let gib = |b: u64| format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30));
    let (gpu_layers, reason) = if let Some(n) = request.gpu_layers {
        (n.min(all), format!("gpuLayers: {n} asked for"))
    } else {
        let f = super::fit::fit(
            &l.layer_bytes,
            &l.kv_bytes,
            l.output_bytes,
            free,
            l.headroom,
        );
        let reason = if f.gpu_layers == all {
            format!(
                "all {} layers and the output fit: {} needed and {} kept for compute \
                 buffers, {} free for models",
                n_layer,
                gib(f.device_bytes),
                gib(l.headroom),
                gib(free)
            )
        } else {
            let on_cpu = if f.gpu_layers == n_layer {
                "the output runs on the CPU".to_string()
            } else {
                format!(
                    "{} layers and the output run on the CPU",
                    n_layer - f.gpu_layers
                )
            };
            format!(
                "{} of {} layers fit {} free for models (less {} kept for compute \
                 buffers); {on_cpu}",
                f.gpu_layers,
                n_layer,
                gib(free),
                gib(l.headroom)
            )
        };
        (f.gpu_layers, reason)
    };
    let device_bytes =
        super::fit::bytes_for(&l.layer_bytes, &l.kv_bytes, l.output_bytes, gpu_layers);
    // The model holds its weights and one context's KV cache; further contexts hold
    // their own (`fit::ContextKv`).
    let share = super::fit::DeviceShare::take(device, device_bytes);
    Ok((
        Placed {
            device_index: device,
            device: d.name,
            backend: d.backend,
            gpu_layers,
            layers: n_layer,
            device_bytes,
            reason,
        },
        share,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::generate;
    use crate::store::gguf_check::tests::{gguf_str, kv, str_array, u32_array};
    use crate::store::gguf_check::{self, Header, Ty, Value};
    use std::collections::BTreeMap;
    use std::fs::File;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    const DEMO: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    const MAX_CASES: usize = 400;
    const TIME_LIMIT: Duration = Duration::from_secs(60);
    /// Tensor data copied after the header; the rest of each file is a hole.
    const DATA_PREFIX: u64 = 2 << 20;

    /// Marsaglia's xorshift64: fixed seed, so every run tries the same files.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    // The case being run, for the SIGABRT handler: an abort kills the test binary
    // before any captured output is shown.
    static CASE: [AtomicU8; 512] = [const { AtomicU8::new(0) }; 512];
    static CASE_LEN: AtomicUsize = AtomicUsize::new(0);

    fn set_case(s: &str) {
        let b = &s.as_bytes()[..s.len().min(CASE.len())];
        for (slot, &c) in CASE.iter().zip(b) {
            slot.store(c, Ordering::Relaxed);
        }
        CASE_LEN.store(b.len(), Ordering::SeqCst);
    }

    extern "C" fn report_abort(_: libc::c_int) {
        let prefix = b"\nSIGABRT while GGUF fuzz case ";
        let mut buf = [0u8; 600];
        buf[..prefix.len()].copy_from_slice(prefix);
        let n = CASE_LEN.load(Ordering::SeqCst).min(CASE.len());
        for (i, c) in CASE[..n].iter().enumerate() {
            buf[prefix.len() + i] = c.load(Ordering::Relaxed);
        }
        let suffix = b" was running\n";
        buf[prefix.len() + n..][..suffix.len()].copy_from_slice(suffix);
        // SAFETY: write(2) is async-signal-safe and `buf` is a live local; the handler
        // then returns and abort() ends the process as it would have.
        unsafe {
            libc::write(2, buf.as_ptr().cast(), prefix.len() + n + suffix.len());
        }
    }

    /// The demo model's first bytes: header, tensor infos and some tensor data.
    struct Source {
        bytes: Vec<u8>,
        h: Header,
    }

    impl Source {
        fn entries(&self) -> Vec<Vec<u8>> {
            self.h
                .kvs
                .iter()
                .map(|kv| self.bytes[kv.span.start as usize..kv.span.end as usize].to_vec())
                .collect()
        }

        fn position(&self, key: &str) -> usize {
            self.h
                .kvs
                .iter()
                .position(|kv| kv.key == key.as_bytes())
                .unwrap_or_else(|| panic!("{key} is not in the demo model"))
        }

        /// A file with `entries` as its key-values and the demo's tensors: its bytes and
        /// the length to extend it to, so that every tensor lies inside the file.
        fn rebuild(&self, entries: &[Vec<u8>]) -> (Vec<u8>, u64) {
            let mut b = self.bytes[..8].to_vec();
            b.extend_from_slice(&(self.h.tensors.len() as u64).to_le_bytes());
            b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            for e in entries {
                b.extend_from_slice(e);
            }
            let infos = &self.h.tensor_span;
            b.extend_from_slice(&self.bytes[infos.start as usize..infos.end as usize]);
            b.resize(
                (b.len() as u64).div_ceil(self.h.alignment) as usize * self.h.alignment as usize,
                0,
            );
            let data = self.h.data_start();
            let len = b.len() as u64 + (self.h.file_len - data);
            b.extend_from_slice(&self.bytes[data as usize..]);
            (b, len)
        }

        fn edited(&self, edit: impl FnOnce(&Self, &mut Vec<Vec<u8>>)) -> (Vec<u8>, u64) {
            let mut e = self.entries();
            edit(self, &mut e);
            self.rebuild(&e)
        }

        fn u32_of(&self, key: &str) -> u32 {
            match self.h.get(key).map(|kv| &kv.value) {
                Some(Value::Int(v)) => *v as u32,
                _ => panic!("{key} is not an integer in the demo model"),
            }
        }
    }

    /// What a case writes: bytes, and the length to extend them to with a hole.
    type Build = Box<dyn Fn(&Source) -> (Vec<u8>, u64)>;

    fn truncations(src: &Source, rng: &mut XorShift) -> Vec<(String, Build)> {
        let header_end = src.h.data_start();
        let mut lens: Vec<u64> = vec![0, 1, 3, 4, 5, 7, 8, 12, 16, 20, 23, 24, 25, 31, 32];
        // Inside and at the edges of the first entries, where every field is read.
        for kv in src.h.kvs.iter().take(26) {
            lens.extend([kv.span.start + 1, kv.value_at, kv.span.end - 1]);
        }
        lens.extend((0..20).map(|_| rng.below(header_end)));
        lens.extend(
            (0..6)
                .map(|_| src.h.tensor_span.start + rng.below(header_end - src.h.tensor_span.start)),
        );
        lens.extend([header_end - 1, header_end, src.bytes.len() as u64]);
        lens.into_iter()
            .map(|len| {
                let build: Build = Box::new(move |s| (s.bytes[..len as usize].to_vec(), len));
                (format!("header truncated to {len} bytes"), build)
            })
            .collect()
    }

    fn flips(rng: &mut XorShift, n: usize) -> Vec<(String, Build)> {
        (0..n)
            .map(|_| {
                let flips: Vec<(usize, u8)> = (0..=rng.below(4))
                    .map(|_| (rng.below(4096) as usize, 1 + rng.below(255) as u8))
                    .collect();
                let name = format!("bytes flipped (offset, xor): {flips:?}");
                let build: Build = Box::new(move |s| {
                    let mut b = s.bytes.clone();
                    for &(at, x) in &flips {
                        b[at] ^= x;
                    }
                    (b, s.h.file_len)
                });
                (name, build)
            })
            .collect()
    }

    fn entry_case(
        name: String,
        edit: impl Fn(&Source, &mut Vec<Vec<u8>>) + 'static,
    ) -> (String, Build) {
        (name, Box::new(move |s| s.edited(&edit)))
    }

    fn set(key: &'static str, entry: Vec<u8>) -> impl Fn(&Source, &mut Vec<Vec<u8>>) {
        move |s, e| {
            let i = s.position(key);
            e[i] = entry.clone();
        }
    }

    // A table of cases, one after another.
    #[allow(clippy::too_many_lines)]
    fn targeted(src: &Source) -> Vec<(String, Build)> {
        let mut cases = Vec::new();
        let n_layer = src.u32_of("llama.block_count");
        for key in [
            "llama.block_count",
            "llama.embedding_length",
            "llama.attention.head_count",
            "llama.attention.head_count_kv",
            "llama.context_length",
        ] {
            let orig = src.u32_of(key);
            for v in [0, 1, 2, 7, 513, u32::MAX] {
                cases.push(entry_case(
                    format!("{key} = {v} (u32)"),
                    set(key, kv(key, Ty::U32, &v.to_le_bytes())),
                ));
            }
            for v in [u64::MAX, u64::from(orig)] {
                cases.push(entry_case(
                    format!("{key} = {v} (u64)"),
                    set(key, kv(key, Ty::U64, &v.to_le_bytes())),
                ));
            }
            cases.push(entry_case(
                format!("{key} = -1 (i32)"),
                set(key, kv(key, Ty::I32, &(-1i32).to_le_bytes())),
            ));
            cases.push(entry_case(
                format!("{key} = \"9\" (string)"),
                set(key, kv(key, Ty::Str, &gguf_str(b"9"))),
            ));
            let per_layer = vec![orig; n_layer as usize];
            cases.push(entry_case(
                format!("{key} = [{orig}; {n_layer}] (u32 array)"),
                set(key, kv(key, Ty::Array, &u32_array(Ty::U32, &per_layer))),
            ));
            let mut with_zero = per_layer.clone();
            with_zero[3] = 0;
            cases.push(entry_case(
                format!("{key} = per-layer i32 array with layer 3 = 0"),
                set(key, kv(key, Ty::Array, &u32_array(Ty::I32, &with_zero))),
            ));
            cases.push(entry_case(
                format!("{key} = [{orig}; {}] (array one short)", n_layer - 1),
                set(
                    key,
                    kv(key, Ty::Array, &u32_array(Ty::U32, &per_layer[1..])),
                ),
            ));
            cases.push(entry_case(format!("{key} removed"), move |s, e| {
                e.remove(s.position(key));
            }));
        }
        // Float hyperparameters: llama.cpp loads them unchecked and ggml asserts on a
        // bad norm epsilon at the first token, which only a generation reaches.
        for key in [
            "llama.attention.layer_norm_rms_epsilon",
            "llama.rope.freq_base",
        ] {
            for v in [
                -1.0f32,
                f32::NAN,
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                1e30,
                1e-30,
            ] {
                cases.push(entry_case(
                    format!("{key} = {v} (f32)"),
                    set(key, kv(key, Ty::F32, &v.to_le_bytes())),
                ));
            }
            cases.push(entry_case(
                format!("{key} = NaN (f64)"),
                set(key, kv(key, Ty::F64, &f64::NAN.to_le_bytes())),
            ));
            cases.push(entry_case(
                format!("{key} = 1 (u32)"),
                set(key, kv(key, Ty::U32, &1u32.to_le_bytes())),
            ));
        }
        let rot = "llama.rope.dimension_count";
        for v in [0u32, 2, 63, 65, 66, 128, u32::MAX] {
            cases.push(entry_case(
                format!("{rot} = {v} (u32)"),
                set(rot, kv(rot, Ty::U32, &v.to_le_bytes())),
            ));
        }
        let ftype = "general.file_type";
        for v in [15u32, 0, 999] {
            cases.push(entry_case(
                format!("{ftype} = {v}"),
                set(ftype, kv(ftype, Ty::U32, &v.to_le_bytes())),
            ));
        }
        let u = |v: u32| v.to_le_bytes().to_vec();
        let f = |v: f32| v.to_le_bytes().to_vec();
        let arch = "general.architecture";
        for a in [&b"clip"[..], b"llama4", b"bogus", b""] {
            cases.push(entry_case(
                format!("{arch} = {:?}", String::from_utf8_lossy(a)),
                set(arch, kv(arch, Ty::Str, &gguf_str(a))),
            ));
        }
        cases.push(entry_case(
            format!("{arch} = 1 (u32)"),
            set(arch, kv(arch, Ty::U32, &u(1))),
        ));
        cases.push(entry_case(format!("{arch} removed"), move |s, e| {
            e.remove(s.position(arch));
        }));
        let added: Vec<(&str, Vec<Vec<u8>>)> = vec![
            (
                "rope.scaling.type = \"bogus\"",
                vec![kv("llama.rope.scaling.type", Ty::Str, &gguf_str(b"bogus"))],
            ),
            (
                "rope.scaling.type = \"yarn\"",
                vec![kv("llama.rope.scaling.type", Ty::Str, &gguf_str(b"yarn"))],
            ),
            (
                "rope.scaling.type = 1 (u32)",
                vec![kv("llama.rope.scaling.type", Ty::U32, &u(1))],
            ),
            (
                "nextn_predict_layers = 31",
                vec![kv("llama.nextn_predict_layers", Ty::U32, &u(31))],
            ),
            (
                "nextn_predict_layers = 30",
                vec![kv("llama.nextn_predict_layers", Ty::U32, &u(30))],
            ),
            (
                "expert_count = 2000",
                vec![kv("llama.expert_count", Ty::U32, &u(2000))],
            ),
            (
                "expert_count = 8 alone",
                vec![kv("llama.expert_count", Ty::U32, &u(8))],
            ),
            (
                "expert_used_count = 2 alone",
                vec![kv("llama.expert_used_count", Ty::U32, &u(2))],
            ),
            (
                "expert_count = 8, expert_used_count = 2",
                vec![
                    kv("llama.expert_count", Ty::U32, &u(8)),
                    kv("llama.expert_used_count", Ty::U32, &u(2)),
                ],
            ),
            (
                "expert_count = 8, expert_used_count = 2, expert_group_count = 3",
                vec![
                    kv("llama.expert_count", Ty::U32, &u(8)),
                    kv("llama.expert_used_count", Ty::U32, &u(2)),
                    kv("llama.expert_group_count", Ty::U32, &u(3)),
                ],
            ),
            (
                "attention.key_length = 0",
                vec![kv("llama.attention.key_length", Ty::U32, &u(0))],
            ),
            (
                "attention.key_length = 65",
                vec![kv("llama.attention.key_length", Ty::U32, &u(65))],
            ),
            (
                "attention.value_length = 0",
                vec![kv("llama.attention.value_length", Ty::U32, &u(0))],
            ),
            (
                "general.alignment = 3",
                vec![kv("general.alignment", Ty::U32, &u(3))],
            ),
            (
                "rope.scaling.factor = -1",
                vec![kv("llama.rope.scaling.factor", Ty::F32, &f(-1.0))],
            ),
            (
                "rope.scaling.factor = NaN",
                vec![kv("llama.rope.scaling.factor", Ty::F32, &f(f32::NAN))],
            ),
            (
                "rope.scaling.factor = 4 with type linear",
                vec![
                    kv("llama.rope.scaling.factor", Ty::F32, &f(4.0)),
                    kv("llama.rope.scaling.type", Ty::Str, &gguf_str(b"linear")),
                ],
            ),
            (
                "rope.scaling.attn_factor = -1",
                vec![kv("llama.rope.scaling.attn_factor", Ty::F32, &f(-1.0))],
            ),
            (
                "rope.scale_linear = inf",
                vec![kv("llama.rope.scale_linear", Ty::F32, &f(f32::INFINITY))],
            ),
            (
                "attention.layer_norm_epsilon = -1",
                vec![kv("llama.attention.layer_norm_epsilon", Ty::F32, &f(-1.0))],
            ),
            (
                "logit_scale = NaN",
                vec![kv("llama.logit_scale", Ty::F32, &f(f32::NAN))],
            ),
        ];
        for (name, extra) in added {
            cases.push(entry_case(format!("added {name}"), move |_, e| {
                e.extend(extra.iter().cloned());
            }));
        }
        let tok = "tokenizer.ggml.tokens";
        let tokens = |s: &Source| -> Vec<Vec<u8>> {
            match s.h.get(tok).map(|kv| &kv.value) {
                Some(Value::Array {
                    items: Some(items), ..
                }) => items
                    .iter()
                    .map(|v| match v {
                        Value::Str(b) => b.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
                _ => panic!("the demo model has no token list"),
            }
        };
        for (name, edit) in [
            ("token 300 duplicates token 301", (300usize, None)),
            ("token 5 emptied", (5, Some(Vec::new()))),
            (
                "token 7 renamed [EMPTY_5] after emptying token 5",
                (7, Some(b"[EMPTY_5]".to_vec())),
            ),
        ] {
            cases.push(entry_case(name.to_string(), move |s, e| {
                let mut t = tokens(s);
                let (i, text) = edit.clone();
                t[i] = text.unwrap_or_else(|| t[i + 1].clone());
                if i == 7 {
                    t[5] = Vec::new();
                }
                let refs: Vec<&[u8]> = t.iter().map(Vec::as_slice).collect();
                e[s.position(tok)] = kv(tok, Ty::Array, &str_array(&refs));
            }));
        }
        cases.push(entry_case(
            format!("{tok} = [1] (u32 array)"),
            set(tok, kv(tok, Ty::Array, &u32_array(Ty::U32, &[1]))),
        ));
        cases.push(entry_case(format!("{tok} removed"), move |s, e| {
            e.remove(s.position(tok));
        }));
        let model = "tokenizer.ggml.model";
        for m in [&b"none"[..], b"bogus", b"llama"] {
            cases.push(entry_case(
                format!("{model} = {:?}", String::from_utf8_lossy(m)),
                set(model, kv(model, Ty::Str, &gguf_str(m))),
            ));
        }
        cases
    }

    /// The demo model's tensors, by layer: every layer the same size, and the output,
    /// tied to the token embeddings (whose copy llama.cpp puts with it): every byte of
    /// the tensor data counted once.
    #[test]
    fn the_demo_models_layers_have_sizes_that_add_up() {
        let demo = crate::paths::models_dir().join(DEMO);
        assert!(demo.is_file(), "needs the demo model at {}", demo.display());
        let h = gguf_check::read_header(&demo).expect("the demo model's header");
        let hp = gguf_check::check(&h).expect("checked");
        assert_eq!(hp.layer_bytes.len(), 30);
        assert!(hp
            .layer_bytes
            .iter()
            .all(|&b| b == hp.layer_bytes[0] && b > 1_000_000));
        let (layers, output) = gguf_check::tensor_bytes(&h, hp.n_layer);
        assert_eq!((layers, output), (hp.layer_bytes.clone(), hp.output_bytes));
        // Nothing else but the layers and the output (the tied embeddings and a norm).
        assert_eq!(
            h.file_len - h.data_start(),
            hp.layer_bytes.iter().sum::<u64>() + hp.output_bytes
        );
        // The embeddings: vocabulary × width, at 4.5 to 8.5 bits a weight.
        let vocab_by_width = 49_152 * 576;
        assert!(
            hp.output_bytes >= vocab_by_width / 2 && hp.output_bytes <= vocab_by_width * 2,
            "{}",
            hp.output_bytes
        );
        // A fit: everything on a big device, a few layers on a small one.
        let kv: Vec<u64> = hp.kv_per_layer.iter().map(|v| v * 2 * 2048).collect();
        // Its vocabulary's logits for a 512-token batch: 96 MiB.
        assert_eq!(hp.n_vocab, 49_152);
        let room = crate::llama::fit::headroom(hp.n_vocab);
        assert_eq!(room, crate::llama::fit::HEADROOM + (96 << 20));
        let all = crate::llama::fit::fit(&hp.layer_bytes, &kv, hp.output_bytes, 1 << 30, room);
        assert_eq!(all.gpu_layers, 31);
        let few = crate::llama::fit::fit(
            &hp.layer_bytes,
            &kv,
            hp.output_bytes,
            room + 5 * (hp.layer_bytes[0] + kv[0]),
            room,
        );
        assert_eq!(few.gpu_layers, 5);
    }

    /// Hundreds of broken copies of the demo model's header, each probed and (when the
    /// probe passes) loaded and asked for one token: every one must be a
    /// `MODEL_LOAD_FAILED` error or a model, never a llama.cpp abort, which would kill
    /// this test binary.
    #[test]
    // One run from building the cases to the summary; the cases are functions already.
    #[allow(clippy::too_many_lines)]
    fn fuzzed_gguf_headers_never_abort() {
        let started = Instant::now();
        let demo = crate::paths::models_dir().join(DEMO);
        assert!(
            demo.is_file(),
            "this test needs the demo model at {}: run `node scripts/models.js` to fetch it",
            demo.display()
        );
        let h = gguf_check::read_header(&demo).expect("the demo model's header");
        let keep = (h.data_start() + DATA_PREFIX).min(h.file_len);
        let mut bytes = vec![0; keep as usize];
        File::open(&demo)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .expect("read the demo model");
        let src = Source { bytes, h };

        let mut rng = XorShift(SEED);
        let baseline: Vec<(String, Build)> = vec![(
            "unmodified, tensor data a hole".into(),
            Box::new(|s: &Source| (s.bytes.clone(), s.h.file_len)),
        )];
        let groups = [
            truncations(&src, &mut rng),
            flips(&mut rng, 120),
            targeted(&src),
        ];
        // Round-robin, so that a time limit still leaves every kind tried.
        let mut iters: Vec<_> = groups.into_iter().map(Vec::into_iter).collect();
        let mut cases = baseline;
        while cases.len() < MAX_CASES {
            let before = cases.len();
            for it in &mut iters {
                cases.extend(it.next());
            }
            if cases.len() == before {
                break;
            }
        }
        cases.truncate(MAX_CASES);

        let dir = std::env::temp_dir().join(format!("orion-gguf-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: `report_abort` only loads atomics and calls write(2), both
        // async-signal-safe, and returns; it is a plain extern "C" fn that lives as long
        // as the process.
        unsafe {
            libc::signal(
                libc::SIGABRT,
                report_abort as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }

        let engine = LlamaEngine::default();
        let one_token = crate::engine::llm::GenerateParams {
            max_tokens: 1,
            temperature: 0.0,
            raw: true,
            prefix_cache: false,
            threads: 2,
            ..Default::default()
        };
        let never = AtomicBool::new(false);
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        let mut run = 0;
        for (i, (name, build)) in cases.iter().enumerate() {
            if started.elapsed() > TIME_LIMIT {
                break;
            }
            let path: PathBuf = dir.join(format!("case-{i}.gguf"));
            let (data, len) = build(&src);
            let f = File::create(&path).unwrap();
            std::io::Write::write_all(&mut &f, &data).unwrap();
            // Extending makes a hole, not written zeros: llama.cpp then finds every
            // tensor inside the file and goes on to the hyperparameters and vocabulary.
            f.set_len(len).unwrap();
            drop(f);
            set_case(&format!("#{i}: {name} (file kept: {})", path.display()));
            let result = engine
                .probe(&path, 2048)
                .map_err(|e| ("probe", e))
                .and_then(|_| {
                    engine
                        .load(&path, LoadRequest::default(), Box::new(|_| {}))
                        .map_err(|e| ("load", e))
                })
                .and_then(|model| {
                    // ggml checks some values only when it computes (a norm epsilon,
                    // the rotated dimensions): one token must not abort either.
                    generate::generate(
                        &model,
                        64,
                        &crate::engine::llm::Prompt::Text("Hi".into()),
                        &one_token,
                        &never,
                        &mut |_| {},
                    )
                    .map(|_| model)
                    .map_err(|e| ("generate", e))
                });
            let outcome = match &result {
                Ok(_) => "loaded and generated".to_string(),
                // A model that loads may still fail to compute (its tensor data is a
                // hole): an error is fine there, an abort is not.
                Err((stage @ "generate", e)) => format!("{stage}: {}", e.code()),
                Err((stage, e)) => {
                    assert_eq!(e.code(), "MODEL_LOAD_FAILED", "case #{i} {name}: {e}");
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&path.display().to_string()),
                        "case #{i} {name}: {msg}"
                    );
                    format!("{stage}: {}", e.code())
                }
            };
            if i == 0 {
                assert_eq!(
                    outcome, "loaded and generated",
                    "the unmodified header must load"
                );
            }
            drop(result);
            *codes.entry(outcome).or_default() += 1;
            run += 1;
            std::fs::remove_file(&path).unwrap();
        }
        CASE_LEN.store(0, Ordering::SeqCst);
        // SAFETY: restores the default action, which needs no handler to stay alive.
        unsafe {
            libc::signal(libc::SIGABRT, libc::SIG_DFL);
        }
        std::fs::remove_dir(&dir).ok();
        println!(
            "GGUF fuzz: {run} of {} cases in {:.1?} (seed {SEED:#x}): {codes:?}",
            cases.len(),
            started.elapsed()
        );
        assert!(run >= 100, "only {run} cases ran within {TIME_LIMIT:?}");
    }
}
