//! What embedding model families expect of their input and allow of their output, from
//! their model cards: the prefix or instruction a query or a document takes, and whether
//! the vectors may be cut short (Matryoshka training) and to what lengths. A model is
//! recognised by its name (a GGUF's `general.name` and `general.basename`, its file name,
//! or an ONNX model's directory name).

/// Shorter vectors a family was trained for (Matryoshka representation learning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shorter {
    /// Any length from this one to the model's own.
    From(usize),
    /// Only these lengths.
    Only(&'static [usize]),
}

/// An embedding model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Family {
    /// Its name, as shown in the statistics and in errors.
    pub(crate) name: &'static str,
    /// Put before a query (`inputType: 'query'`).
    pub(crate) query_prefix: &'static str,
    /// Put before a document (`inputType: 'document'`).
    pub(crate) document_prefix: &'static str,
    /// A query is written `Instruct: <instruction>\nQuery:<query>`, with this default
    /// instruction (Qwen3-Embedding's).
    pub(crate) query_instruction: Option<&'static str>,
    pub(crate) shorter: Option<Shorter>,
}

const BGE_QUERY: &str = "Represent this sentence for searching relevant passages: ";

/// Name fragments (lower case, `-` for spaces and `_`) and their families; the first
/// match wins, so longer names come before their prefixes.
const FAMILIES: &[(&str, Family)] = &[
    (
        "nomic-embed-text-v2",
        Family {
            name: "nomic-embed-text-v2",
            query_prefix: "search_query: ",
            document_prefix: "search_document: ",
            query_instruction: None,
            shorter: Some(Shorter::From(256)),
        },
    ),
    (
        "nomic-embed-text-v1.5",
        Family {
            name: "nomic-embed-text-v1.5",
            query_prefix: "search_query: ",
            document_prefix: "search_document: ",
            query_instruction: None,
            shorter: Some(Shorter::From(64)),
        },
    ),
    (
        "nomic-embed-text",
        Family {
            name: "nomic-embed-text-v1",
            query_prefix: "search_query: ",
            document_prefix: "search_document: ",
            query_instruction: None,
            shorter: None,
        },
    ),
    (
        "qwen3-embedding",
        Family {
            name: "Qwen3-Embedding",
            query_prefix: "",
            document_prefix: "",
            query_instruction: Some(
                "Given a web search query, retrieve relevant passages that answer the query",
            ),
            shorter: Some(Shorter::From(32)),
        },
    ),
    (
        "embeddinggemma",
        Family {
            name: "EmbeddingGemma",
            query_prefix: "task: search result | query: ",
            document_prefix: "title: none | text: ",
            query_instruction: None,
            shorter: Some(Shorter::Only(&[128, 256, 512, 768])),
        },
    ),
    (
        "mxbai-embed-large",
        Family {
            name: "mxbai-embed-large",
            query_prefix: BGE_QUERY,
            document_prefix: "",
            query_instruction: None,
            shorter: Some(Shorter::From(64)),
        },
    ),
    (
        "bge-m3",
        Family {
            name: "bge-m3",
            query_prefix: "",
            document_prefix: "",
            query_instruction: None,
            shorter: None,
        },
    ),
    (
        "-en-v1.5",
        Family {
            name: "bge-en-v1.5",
            query_prefix: BGE_QUERY,
            document_prefix: "",
            query_instruction: None,
            shorter: None,
        },
    ),
    (
        "e5-",
        Family {
            name: "e5",
            query_prefix: "query: ",
            document_prefix: "passage: ",
            query_instruction: None,
            shorter: None,
        },
    ),
    (
        "minilm",
        Family {
            name: "MiniLM",
            query_prefix: "",
            document_prefix: "",
            query_instruction: None,
            shorter: None,
        },
    ),
];

/// The family of a model known by these names, if one matches.
pub(crate) fn of(names: &[&str]) -> Option<&'static Family> {
    let names: Vec<String> = names
        .iter()
        .map(|n| n.to_lowercase().replace([' ', '_'], "-"))
        .collect();
    FAMILIES.iter().find_map(|(fragment, family)| {
        let hit = names.iter().any(|n| {
            if *fragment == "-en-v1.5" {
                n.contains("bge-") && n.contains(fragment)
            } else {
                n.contains(fragment)
            }
        });
        hit.then_some(family)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_recognised_by_their_names() {
        let name = |n: &str| of(&[n]).map(|f| f.name);
        assert_eq!(
            name("nomic-embed-text-v1.5.Q8_0.gguf"),
            Some("nomic-embed-text-v1.5")
        );
        assert_eq!(name("Nomic Embed Text V1"), Some("nomic-embed-text-v1"));
        assert_eq!(
            name("nomic-embed-text-v2-moe.f16"),
            Some("nomic-embed-text-v2")
        );
        assert_eq!(name("Qwen3-Embedding-0.6B-Q8_0"), Some("Qwen3-Embedding"));
        assert_eq!(name("embeddinggemma-300m"), Some("EmbeddingGemma"));
        assert_eq!(name("bge-small-en-v1.5"), Some("bge-en-v1.5"));
        assert_eq!(name("bge-m3-Q4_K_M"), Some("bge-m3"));
        assert_eq!(name("multilingual-e5-small"), Some("e5"));
        assert_eq!(name("all-MiniLM-L6-v2"), Some("MiniLM"));
        assert_eq!(name("some-other-model"), None);
        // Any of the names may match.
        assert_eq!(
            of(&["model", "bge-base-en-v1.5"]).map(|f| f.name),
            Some("bge-en-v1.5")
        );
    }
}
