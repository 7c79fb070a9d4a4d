//! What an embedding engine provides: a model in this process ([`EmbedderFactory`],
//! ONNX Runtime's) or batches computed elsewhere ([`RemoteEngine`], a server pool's).
//! The embedding service (`embedding`) is generic over both.

use crate::error::Result;
use std::sync::Arc;

/// Something that turns texts into vectors; the real one is `onnx`'s `FastEmbedder`, tests use
/// fakes.
pub(crate) trait Embedder: Send {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// What the model made of each text of the last [`Embedder::embed`], in order, where
    /// the engine knows (empty where it does not).
    fn last_read(&mut self) -> Vec<Read> {
        Vec::new()
    }
    /// The threads the last [`Embedder::embed`] computed with, where the engine chooses
    /// them per call (llama.cpp's, fewer while other processes keep cores busy).
    fn last_threads(&self) -> Option<usize> {
        None
    }
}

/// What a model made of one text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Read {
    /// Tokens the model read, special tokens included (after any cut).
    pub(crate) tokens: u32,
    /// The text was longer than the model reads, and was cut.
    pub(crate) cut: bool,
}

/// Loads an [`Embedder`] on the inference thread, the first time it is needed.
pub(crate) trait EmbedderFactory: Send + Sync {
    fn load(&self) -> Result<Box<dyn Embedder>>;
}

/// One batch's vectors, computed on the async runtime.
pub(crate) type BatchFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Vec<f32>>>> + Send>>;

/// An engine that embeds batches elsewhere (a remote server), several at a time, as
/// futures on the process's async runtime; the real one is
/// `crate::remote::embeddings::RemoteEmbeddings`, tests use fakes.
pub(crate) trait RemoteEngine: Send + Sync + 'static {
    fn embed(self: Arc<Self>, texts: Vec<Arc<str>>) -> BatchFuture;
    /// Most batches in flight at once.
    fn max_in_flight(&self) -> usize;
    /// The servers, for the stats.
    fn endpoints(&self) -> Vec<super::EndpointStats>;
}

/// A computed vector, with what the model made of its text; reads as its values.
#[derive(Debug, PartialEq)]
pub(crate) struct Embedded {
    pub(crate) values: Box<[f32]>,
    pub(crate) read: Read,
}

impl std::ops::Deref for Embedded {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.values
    }
}

impl Embedded {
    /// `values`, of a text the model read as `read`.
    pub(crate) fn new(values: Vec<f32>, read: Read) -> Vector {
        Arc::new(Self {
            values: values.into_boxed_slice(),
            read,
        })
    }
}

pub(crate) type Vector = Arc<Embedded>;
