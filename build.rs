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
        // (Windows looks beside the addon already: Node loads it with
        // LOAD_WITH_ALTERED_SEARCH_PATH, which searches the DLL's own directory for the
        // DLLs it imports.)
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
            println!("cargo::rustc-link-arg-cdylib=-Wl,--disable-new-dtags,-rpath,$ORIGIN");
        }
    }
}
