//! Build script: napi-build sets the linker flags a Node addon needs.
fn main() {
    napi_build::setup();
    println!("cargo::rustc-check-cfg=cfg(ggml_dl)");
    // llama-cpp-sys-2 says where it put ggml's backend modules when it builds them as
    // modules (its `dynamic-backends` feature); llama.cpp is then shared libraries too.
    if std::env::var_os("DEP_LLAMA_BACKENDS_DIR").is_some() {
        println!("cargo::rustc-cfg=ggml_dl");
        // The addon finds libllama and libggml beside itself, wherever the package is
        // installed. DT_RPATH rather than DT_RUNPATH: it also applies to their own
        // dependencies on each other.
        println!("cargo::rustc-link-arg-cdylib=-Wl,--disable-new-dtags,-rpath,$ORIGIN");
    }
}
