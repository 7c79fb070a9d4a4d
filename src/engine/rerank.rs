//! Reranking rides on the embedding service's machinery (queue, batching across
//! workers, cache, timeouts, statistics): each (query, document) pair is one queued
//! "text", and its "vector" is the pair's one score. This is how a pair is written as
//! one text and read back, by the service that queues it and the engines that score it.

/// Most bytes of the query kept in a pair, and of a document: together under the
/// service's cut of a queued text (`MAX_TEXT_BYTES`, 32 KiB), so that a pair is never
/// cut there, where its parts could no longer be told apart.
pub(crate) const MAX_QUERY_BYTES: usize = 8 * 1024;
pub(crate) const MAX_DOCUMENT_BYTES: usize = 24 * 1024 - 16;

/// `text` cut to at most `max` bytes on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One queued text for the pair: the query's length in bytes, NUL, the query, the
/// document. Any query or document (NULs included) reads back whole.
pub(crate) fn pair_key(query: &str, document: &str) -> String {
    let (q, d) = (
        clip(query, MAX_QUERY_BYTES),
        clip(document, MAX_DOCUMENT_BYTES),
    );
    format!("{}\0{q}{d}", q.len())
}

/// The query and the document of a [`pair_key`]. A text that is not one reads as an
/// empty query and the text as the document.
pub(crate) fn split_pair(key: &str) -> (&str, &str) {
    let Some((len, rest)) = key.split_once('\0') else {
        return ("", key);
    };
    match len.parse::<usize>() {
        Ok(n) if n <= rest.len() && rest.is_char_boundary(n) => rest.split_at(n),
        _ => ("", key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_back_whole() {
        for (q, d) in [
            ("what is rust?", "Rust is a language."),
            ("", ""),
            ("a\0b", "12\0c"),
            ("ünï", "çödé 🚀"),
        ] {
            assert_eq!(split_pair(&pair_key(q, d)), (q, d));
        }
        let long = "é".repeat(10_000);
        let key = pair_key(&long, &long);
        assert!(key.len() <= 32 * 1024);
        let (q, d) = split_pair(&key);
        assert!(q.len() <= MAX_QUERY_BYTES && long.starts_with(q));
        assert!(d.len() <= MAX_DOCUMENT_BYTES && long.starts_with(d));
        assert_eq!(split_pair("no pair"), ("", "no pair"));
        assert_eq!(split_pair("99\0short"), ("", "99\0short"));
    }
}
