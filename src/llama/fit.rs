//! How many of a model's layers go to a GPU device, and the device memory this
//! process's models hold.
//!
//! The fit is our own estimate, from the GGUF file's tensor sizes: llama.cpp offloads the
//! last layers first and the output after all of them, each offloaded layer with its
//! share of the KV cache; room is kept for the compute buffers, which grow with the batch
//! and the vocabulary, not the weights, and for the driver. (llama.cpp's own
//! `common_fit_params` measures instead, by loading the model and a context without
//! memory, but swaps llama.cpp's process-wide logger while it runs, which races the
//! logging of the models other threads are computing with; and it sees only the device's
//! free memory, not what this process's models hold on a driver that does not report it.)

use parking_lot::Mutex;
use std::collections::HashMap;

const MIB: u64 = 1 << 20;

/// Kept free on the device whatever the model: the driver's own allocations and the
/// compute buffers other than the logits (activations; attention scores where flash
/// attention is off). The monitor measures device pressure against it.
pub(crate) const HEADROOM: u64 = 320 * MIB;

/// Tokens in one of llama.cpp's micro-batches (`n_ubatch`'s default, which the addon's
/// contexts keep): its compute buffers are reserved for that many outputs.
const UBATCH: u64 = 512;

/// What a load of a model with `n_vocab` tokens keeps free on its device: [`HEADROOM`]
/// plus the f32 logits of one micro-batch, the largest compute buffer of a model with a
/// large vocabulary (a 256k-token vocabulary's logits take 500 MiB). On lavapipe, the
/// demo model's (49152 tokens) compute buffer is 102.5 MiB, 96 MiB of it logits. Kept
/// also when only some layers fit and the output (so the logits) stays on the CPU: a
/// split then offloads a few layers fewer than it could, rather than risk the context.
pub(crate) fn headroom(n_vocab: u32) -> u64 {
    HEADROOM.saturating_add(UBATCH * 4 * u64::from(n_vocab))
}

/// A model's layers and the device memory they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fit {
    /// What llama.cpp is told (`n_gpu_layers`): `n_layer + 1` puts the output there too.
    pub(crate) gpu_layers: u32,
    /// Bytes of weights and KV cache on the device.
    pub(crate) device_bytes: u64,
}

/// The KV bytes of the last `n` layers (`kv`: each layer's): those on the device.
pub(crate) fn kv_on_device(kv: &[u64], n: u32) -> u64 {
    let take = (n as usize).min(kv.len());
    kv[kv.len() - take..]
        .iter()
        .fold(0, |a, b| a.saturating_add(*b))
}

/// Device bytes for the last `n` layers (and the output when `n > layers.len()`).
pub(crate) fn bytes_for(layer_bytes: &[u64], kv_bytes: &[u64], output_bytes: u64, n: u32) -> u64 {
    let n_layer = layer_bytes.len();
    let take = (n as usize).min(n_layer);
    let layers: u64 = (n_layer - take..n_layer)
        .map(|i| layer_bytes[i].saturating_add(kv_bytes.get(i).copied().unwrap_or(0)))
        .fold(0u64, u64::saturating_add);
    if n as usize > n_layer {
        layers.saturating_add(output_bytes)
    } else {
        layers
    }
}

/// As many layers as fit `free` bytes less `headroom` ([`headroom`]): all of them and the
/// output when they fit, else the last ones that do (the rest run on the CPU).
pub(crate) fn fit(
    layer_bytes: &[u64],
    kv_bytes: &[u64],
    output_bytes: u64,
    free: u64,
    headroom: u64,
) -> Fit {
    let room = free.saturating_sub(headroom);
    let n_layer = layer_bytes.len() as u32;
    let all = n_layer + 1;
    if bytes_for(layer_bytes, kv_bytes, output_bytes, all) <= room {
        return Fit {
            gpu_layers: all,
            device_bytes: bytes_for(layer_bytes, kv_bytes, output_bytes, all),
        };
    }
    let mut n = 0;
    while n < n_layer && bytes_for(layer_bytes, kv_bytes, output_bytes, n + 1) <= room {
        n += 1;
    }
    Fit {
        gpu_layers: n,
        device_bytes: bytes_for(layer_bytes, kv_bytes, output_bytes, n),
    }
}

/// Device bytes held by this process's models, by ggml's device index.
static HELD: Mutex<Option<HashMap<usize, u64>>> = Mutex::new(None);

/// Device memory a loaded model holds, given back when it is dropped (its model
/// unloaded and freed).
#[derive(Debug)]
pub(crate) struct DeviceShare {
    pub(crate) device: usize,
    pub(crate) bytes: u64,
}

impl DeviceShare {
    pub(crate) fn take(device: usize, bytes: u64) -> Self {
        let mut held = HELD.lock();
        let e = held
            .get_or_insert_with(HashMap::new)
            .entry(device)
            .or_insert(0);
        *e = e.saturating_add(bytes);
        Self { device, bytes }
    }
}

impl Drop for DeviceShare {
    fn drop(&mut self) {
        if let Some(e) = HELD.lock().as_mut().and_then(|h| h.get_mut(&self.device)) {
            *e = e.saturating_sub(self.bytes);
        }
    }
}

/// The device memory a context of a model with layers on a GPU device takes there: the
/// KV cache of those layers. The model's load holds one context's (of the model's
/// length: `reserve`) with its weights, so that its first context has room whatever loads
/// after it; every further context that lives at once (those a model keeps for other
/// conversations, up to `prefix::CAPACITY`, besides the one in use) holds its own share
/// ([`ContextHold`]) while it lives, so that they count as the weights do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContextKv {
    pub(crate) device: usize,
    /// KV bytes on the device per token of the context.
    pub(crate) per_token: u64,
    /// The KV bytes the model's own share holds for one context.
    pub(crate) reserve: u64,
    /// What the model's load kept free besides ([`headroom`]).
    pub(crate) headroom: u64,
}

impl ContextKv {
    pub(crate) fn bytes(&self, n_ctx: u32) -> u64 {
        self.per_token.saturating_mul(n_ctx.into())
    }

    /// Whether a context of `n_ctx` tokens fits `room` (what is free for models on the
    /// device) with the headroom kept.
    pub(crate) fn fits(&self, n_ctx: u32, room: u64) -> bool {
        self.bytes(n_ctx).saturating_add(self.headroom) <= room
    }
}

/// What a context of a model on a GPU device holds there while it lives: the model's
/// reserve (its flag set while taken), or a share of its own.
#[derive(Debug)]
pub(crate) enum ContextHold {
    Reserve(std::sync::Arc<std::sync::atomic::AtomicBool>),
    // Held, never read: given back when the context drops it.
    Share(#[allow(dead_code)] DeviceShare),
}

impl ContextHold {
    /// The model's reserve, if its flag `taken` was free and `bytes` fit it.
    pub(crate) fn reserve(
        taken: &std::sync::Arc<std::sync::atomic::AtomicBool>,
        kv: &ContextKv,
        bytes: u64,
    ) -> Option<Self> {
        (bytes <= kv.reserve && !taken.swap(true, std::sync::atomic::Ordering::SeqCst))
            .then(|| Self::Reserve(taken.clone()))
    }
}

impl Drop for ContextHold {
    fn drop(&mut self) {
        if let Self::Reserve(taken) = self {
            taken.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Device bytes this process's models hold on `device`.
pub(crate) fn held(device: usize) -> u64 {
    HELD.lock()
        .as_ref()
        .and_then(|h| h.get(&device).copied())
        .unwrap_or(0)
}

/// What is free for a new model on a device: what the driver reports, but never more
/// than its total less what this process's models hold (some drivers, lavapipe among
/// them, report their whole heap as free whatever is allocated).
pub(crate) fn free_for_models(reported_free: u64, total: u64, held: u64) -> u64 {
    reported_free.min(total.saturating_sub(held))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn everything_fits_a_big_device_and_the_last_layers_a_small_one() {
        // A 7B-like model: 32 layers of 120 MiB and 16 MiB of KV each, a 250 MiB output.
        let layers = vec![120 * MIB; 32];
        let kv = vec![16 * MIB; 32];
        let out = 250 * MIB;
        let whole = bytes_for(&layers, &kv, out, 33);
        assert_eq!(whole, 32 * 136 * MIB + 250 * MIB);
        let room = headroom(32_000);
        assert_eq!(room, 320 * MIB + 62 * MIB + MIB / 2);
        assert_eq!(
            fit(&layers, &kv, out, 8 * GIB, room),
            Fit {
                gpu_layers: 33,
                device_bytes: whole
            }
        );
        // 2 GiB: (2048 - 382.5) / 136 = 12 layers, not the output.
        let f = fit(&layers, &kv, out, 2 * GIB, room);
        assert_eq!(f.gpu_layers, 12);
        assert_eq!(f.device_bytes, 12 * 136 * MIB);
        assert!(f.device_bytes <= 2 * GIB - room);
        // Less than the headroom: nothing.
        assert_eq!(fit(&layers, &kv, out, 380 * MIB, room).gpu_layers, 0);
        // A 256k-token vocabulary keeps 500 MiB more for its logits: 9 layers.
        assert_eq!(headroom(256_000), 320 * MIB + 500 * MIB);
        assert_eq!(
            fit(&layers, &kv, out, 2 * GIB, headroom(256_000)).gpu_layers,
            9
        );
    }

    #[test]
    fn a_context_fits_beside_what_is_held_only_with_the_headroom_kept() {
        let kv = ContextKv {
            device: 7,
            per_token: 1000,
            reserve: 1_024_000,
            headroom: 100,
        };
        assert_eq!(kv.bytes(2048), 2_048_000);
        assert!(kv.fits(2048, 2_048_100));
        assert!(!kv.fits(2048, 2_048_099));
        // Held like a model's weights, given back when the context goes.
        let before = held(7);
        let share = DeviceShare::take(kv.device, kv.bytes(512));
        assert_eq!(held(7), before + 512_000);
        drop(share);
        assert_eq!(held(7), before);
        // The model's reserve: one context at a time, of at most its size.
        let taken = std::sync::Arc::default();
        assert!(ContextHold::reserve(&taken, &kv, kv.bytes(2048)).is_none());
        let first = ContextHold::reserve(&taken, &kv, kv.bytes(1024)).unwrap();
        assert!(ContextHold::reserve(&taken, &kv, kv.bytes(16)).is_none());
        drop(first);
        assert!(ContextHold::reserve(&taken, &kv, kv.bytes(1024)).is_some());
        assert_eq!(held(7), before);
        // The last layers' KV, where the output (n past the layers) adds none.
        assert_eq!(kv_on_device(&[1, 2, 4], 2), 6);
        assert_eq!(kv_on_device(&[1, 2, 4], 4), 7);
        assert_eq!(kv_on_device(&[1, 2, 4], 0), 0);
    }

    #[test]
    fn held_bytes_are_given_back_and_cap_what_is_free() {
        let device = 4242;
        assert_eq!(held(device), 0);
        let a = DeviceShare::take(device, 3 * GIB);
        let b = DeviceShare::take(device, GIB);
        assert_eq!(held(device), 4 * GIB);
        // A driver that reports its whole heap free: what models hold still counts.
        assert_eq!(free_for_models(8 * GIB, 8 * GIB, held(device)), 4 * GIB);
        // A driver that reports real use: its number.
        assert_eq!(free_for_models(3 * GIB, 8 * GIB, held(device)), 3 * GIB);
        drop(a);
        assert_eq!(held(device), GIB);
        drop(b);
        assert_eq!(held(device), 0);
    }
}
