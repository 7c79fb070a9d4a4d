//! What an embedding engine provides: a model in this process ([`EmbedderFactory`],
//! ONNX Runtime's) or batches computed elsewhere ([`RemoteEngine`], a server pool's).
//! The embedding service (`embedding`) is generic over both.

use crate::error::Result;
use std::sync::Arc;

/// Something that turns texts into vectors; the real one is `onnx`'s `FastEmbedder`, tests use
/// fakes.
pub(crate) trait Embedder: Send {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
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
