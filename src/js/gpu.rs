//! GPU backend modules: `__gpuModules`, through which `lib/binding.js` names the
//! installed GPU packages' modules before llama.cpp starts, and `__gpuCheck`, which a
//! module's check runs in a child process (see `llama::probe`).

use napi_derive::napi;
use std::path::PathBuf;

/// GPU backend modules to check and load when llama.cpp starts (later calls are too
/// late and change nothing).
#[napi(js_name = "__gpuModules", skip_typescript, catch_unwind)]
pub fn gpu_modules(paths: Vec<String>) {
    crate::llm::strategy::offer_gpu_modules(paths.into_iter().map(PathBuf::from).collect());
}

/// Check a GPU backend module (in the child process started for that): load it, list
/// its devices, run a small graph on each. The result as JSON.
#[napi(js_name = "__gpuCheck", skip_typescript, catch_unwind)]
#[allow(clippy::needless_pass_by_value)] // napi-rs passes JS strings by value
pub fn gpu_check(path: String) -> String {
    crate::llm::strategy::gpu_check_json(std::path::Path::new(&path))
}
