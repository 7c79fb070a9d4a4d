//! ONNX Runtime, the one layer that touches it (ort, fastembed): where its library is
//! ([`locate`]), the embedding model it runs ([`model`]) and the rewrites of that
//! model's graph ([`graph`]).

pub(crate) mod graph;
pub(crate) mod locate;
pub(crate) mod model;
pub(crate) mod rerank;
