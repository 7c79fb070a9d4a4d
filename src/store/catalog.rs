//! The catalog (`catalog.json`): popular models under the names apps know them by
//! (`WebLLM`'s for chat models), with where their files are on the hub. The LLM registry
//! reads its `models`; embedding services read its `embedding` section here.

/// The catalog's text, compiled in.
pub(crate) const CATALOG: &str = include_str!("catalog.json");

/// An embedding model of the catalog (`src/store/catalog.json`, section `embedding`):
/// where its files are on the hub and how it pools token vectors.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CatalogEmbedding {
    pub(crate) hub_repo: String,
    /// (file in the repository, file name in the model's directory, its sha256 when
    /// the catalog knows it).
    pub(crate) files: Vec<(String, String, Option<String>)>,
    pub(crate) cls_pooling: bool,
}

/// The catalog's entry for the embedding model `name`, if it has one.
pub(crate) fn embedding_entry(name: &str) -> Option<CatalogEmbedding> {
    #[derive(serde::Deserialize)]
    struct Catalog {
        embedding: std::collections::BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        hub_repo: String,
        pooling: String,
        files: std::collections::BTreeMap<String, File>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct File {
        hub_file: String,
        #[serde(default)]
        sha256: Option<String>,
    }
    let catalog: Catalog = serde_json::from_str(CATALOG).ok()?;
    let e = catalog.embedding.get(name)?;
    // The int8 export: a quarter of the download, as the default model is.
    let local = [
        ("modelQuantized", "model.onnx"),
        ("tokenizer", "tokenizer.json"),
        ("config", "config.json"),
        ("specialTokensMap", "special_tokens_map.json"),
        ("tokenizerConfig", "tokenizer_config.json"),
    ];
    let files = local
        .iter()
        .map(|(key, to)| {
            let f = e.files.get(*key)?;
            Some((f.hub_file.clone(), (*to).to_string(), f.sha256.clone()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(CatalogEmbedding {
        hub_repo: e.hub_repo.clone(),
        files,
        cls_pooling: e.pooling == "cls",
    })
}

/// A GGUF embedding model or reranker of the catalog (`src/store/catalog.json`, section
/// `gguf`), run by llama.cpp: its one file on the hub.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CatalogGguf {
    pub(crate) hub_repo: String,
    pub(crate) hub_file: String,
    pub(crate) size: Option<u64>,
    pub(crate) sha256: Option<String>,
    /// A reranker (rank pooling), not an embedding model.
    pub(crate) reranker: bool,
}

/// The catalog's GGUF entry `name`, if it has one.
pub(crate) fn gguf_entry(name: &str) -> Option<CatalogGguf> {
    #[derive(serde::Deserialize)]
    struct Catalog {
        gguf: std::collections::BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        kind: String,
        hub_repo: String,
        hub_file: String,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        sha256: Option<String>,
    }
    let catalog: Catalog = serde_json::from_str(CATALOG).ok()?;
    let e = catalog.gguf.get(name)?;
    Some(CatalogGguf {
        hub_repo: e.hub_repo.clone(),
        hub_file: e.hub_file.clone(),
        size: e.size,
        sha256: e.sha256.clone(),
        reranker: e.kind == "reranker",
    })
}
