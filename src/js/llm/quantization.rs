//! The free functions about quantization levels and the machine: `applyQuantization`,
//! `getOptimizationStrategy` and the `QUANTIZATION_LEVELS` export.

use super::args::{read_key, read_level};
use super::types::OptimizationStrategy;
use super::R;
use crate::js::js_error;
use crate::store::quant;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

/// The quantization level, model limits, GPU layers, context size and threads chosen
/// for this machine, with the reasons.
#[napi(catch_unwind)]
pub fn get_optimization_strategy(env: Env) -> Result<OptimizationStrategy> {
    let s = crate::llm::strategy::detect().map_err(|e| js_error(&env, &e))?;
    Ok(s.into())
}

/// The app's naming: `applyQuantization('Mistral-7B-Instruct-v0.2', 'q4')` is
/// `'Mistral-7B-Instruct-v0.2-q4f16_1-MLC'`. `loadModel` accepts such ids.
#[napi(
    ts_args_type = "modelId: string, level: QuantizationLevel",
    catch_unwind
)]
pub fn apply_quantization(env: Env, model_id: Unknown, level: Unknown) -> Result<String> {
    let run = || -> R<String> {
        let id = read_key(&model_id, "modelId")?;
        let level = read_level(&level)?;
        quant::apply_quantization(&id, &level)
    };
    run().map_err(|e| js_error(&env, &e))
}

/// `QUANTIZATION_LEVELS`: each level's MLC suffix, GGUF file types and bits per weight.
#[napi(module_exports)]
pub fn module_exports(mut exports: Object, env: Env) -> Result<()> {
    let mut levels = Object::new(&env)?;
    for l in quant::LEVELS {
        let mut o = Object::new(&env)?;
        o.set("name", l.name)?;
        o.set("mlc", l.mlc)?;
        o.set("gguf", l.gguf.to_vec())?;
        o.set("bitsPerWeight", f64::from(l.bits))?;
        o.freeze()?;
        levels.set(l.name, o)?;
    }
    levels.freeze()?;
    exports.set("QUANTIZATION_LEVELS", levels)?;
    Ok(())
}
