//! Self-attention as one `MultiHeadAttention` node per layer.
//!
//! `torch.onnx` writes each layer's attention as about thirty small nodes: reshapes
//! and transposes into heads, the shapes they need computed at run time, two scalings,
//! the mask added to the scores, softmax, a guard against rows that are all masked,
//! and the way back. ONNX Runtime fuses none of them for this export, and each node costs
//! a few microseconds a call whatever its size: 150 of the default model's 350 nodes,
//! about a third of a short text's time. ONNX Runtime's `MultiHeadAttention` does the
//! same arithmetic in one node; on the default model its vectors are bit-identical to the
//! exported graph's (a padded batch, both precisions, measured with ONNX Runtime's own
//! profiler and tested against the reference vectors).
//!
//! Only the exact shape written below is fused; a model exported another way keeps its
//! own nodes.

use super::{node, Graph};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, ModelProto, NodeProto, TensorProto};
use std::collections::HashSet;

/// The padding mask as `MultiHeadAttention` takes it (int32), made once for every layer.
const KEY_PADDING_MASK: &str = "attention_mask__int32";
/// The model input it is made from: 1 for a text's tokens, 0 for padding.
const MASK_INPUT: &str = "attention_mask";

/// One layer's attention, as matched.
struct Attention {
    q: String,
    k: String,
    v: String,
    heads: i64,
    scale: f32,
    /// The node whose output the fused node produces instead (the merge of the heads).
    last: usize,
    output: String,
}

/// The attention's size, from the model's config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    /// `num_attention_heads`.
    pub(crate) count: i64,
    /// `hidden_size`: `count` heads of the exported head size.
    pub(crate) width: i64,
}

/// Fuse every layer's attention of `model`; returns how many were fused.
pub(super) fn fuse(model: &mut ModelProto, heads: Heads) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    if !graph.input.iter().any(|i| i.name == MASK_INPUT) {
        return 0;
    }
    let found: Vec<Attention> = {
        let g = Graph::new(&graph.node, &graph.initializer);
        graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| n.op_type == "Softmax" && n.domain.is_empty())
            .filter_map(|(i, _)| matched(&g, i, heads))
            .collect()
    };
    if found.is_empty() {
        return 0;
    }
    let mut cast = node(
        "Cast",
        "",
        &[MASK_INPUT],
        KEY_PADDING_MASK,
        KEY_PADDING_MASK,
    );
    cast.attribute
        .push(super::int_attr("to", DataType::INT32 as i64));
    let old = std::mem::take(&mut graph.node);
    graph.node.push(cast);
    for (i, n) in old.into_iter().enumerate() {
        match found.iter().find(|a| a.last == i) {
            // Q, K and V come before the merge of the heads, so the order stays
            // topological.
            Some(a) => graph.node.push(fused(a, &n.name)),
            None => graph.node.push(n),
        }
    }
    // The replaced nodes, and the mask's and shapes' computations only they used.
    let outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    loop {
        let used: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .chain(outputs.iter().map(String::as_str))
            .collect();
        let dead: Vec<usize> = (0..graph.node.len())
            .filter(|&i| {
                !graph.node[i]
                    .output
                    .iter()
                    .any(|o| used.contains(o.as_str()))
            })
            .collect();
        if dead.is_empty() {
            break;
        }
        let mut i = 0;
        graph.node.retain(|_| {
            i += 1;
            dead.binary_search(&(i - 1)).is_err()
        });
    }
    super::drop_unused_initializers(graph);
    super::ensure_microsoft_domain(model);
    found.len()
}

fn fused(a: &Attention, name: &str) -> NodeProto {
    let mut n = node(
        "MultiHeadAttention",
        "com.microsoft",
        &[&a.q, &a.k, &a.v, "", KEY_PADDING_MASK],
        &a.output,
        &format!("{name}__attention"),
    );
    n.attribute.push(super::int_attr("num_heads", a.heads));
    let mut scale = AttributeProto::new();
    scale.name = "scale".into();
    scale.type_ = AttributeType::FLOAT.into();
    scale.f = a.scale;
    n.attribute.push(scale);
    n
}

/// The attention around the `Softmax` at `softmax`, in the exporter's form:
///
/// ```text
/// Q ─ Reshape[B,S,H,D] ─ Transpose(0,2,1,3) ─ Mul(c) ─┐
/// K ─ Reshape[B,S,H,D] ─ Transpose(0,2,1,3) ─ Reshape ─ Transpose(0,2,1) ─ Reshape ─ Mul(c) ─ MatMul
///                        (or Reshape[B,S,H,D] ─ Transpose(0,2,3,1) ─ Mul(c))                    │
/// mask from attention_mask ─────────────────────────────────────────────────────────────── Add
///   Softmax(-1) [─ Where(IsNaN(p), 0, p)] ─ MatMul ─ Transpose(0,2,1,3) ─ Reshape ─ output
/// V ─ Reshape[B,S,H,D] ─ Transpose(0,2,1,3) ─────┘
/// ```
fn matched(g: &Graph<'_>, softmax: usize, heads: Heads) -> Option<Attention> {
    if heads.count <= 0 {
        return None;
    }
    let sm = &g.nodes[softmax];
    if sm
        .attribute
        .iter()
        .any(|a| a.name == "axis" && a.i != -1 && a.i != 3)
    {
        return None;
    }
    let add = g.made_by(&sm.input[0], "Add")?;
    let (scores, mask) = match (
        g.made_by(&add.input[0], "MatMul"),
        g.made_by(&add.input[1], "MatMul"),
    ) {
        (Some(m), _) => (m, &add.input[1]),
        (None, Some(m)) => (m, &add.input[0]),
        _ => return None,
    };
    if !g.comes_only_from(mask, MASK_INPUT) {
        return None;
    }
    let (qs, cq) = g.scaled(&scores.input[0])?;
    let (ks, ck) = g.scaled(&scores.input[1])?;
    let q = g.split_heads(qs, &[0, 2, 1, 3], heads)?;
    let k = g.split_heads(ks, &[0, 2, 3, 1], heads).or_else(|| {
        // The exporter's transposed key: heads, then [B*H, S, D], then [B*H, D, S], then
        // back to [B, H, D, S].
        let r = g.made_by(ks, "Reshape")?;
        let t = g.made_by(&r.input[0], "Transpose")?;
        if perm(t)? != [0, 2, 1] {
            return None;
        }
        let r = g.made_by(&t.input[0], "Reshape")?;
        g.split_heads(&r.input[0], &[0, 2, 1, 3], heads)
    })?;
    // The softmax's probabilities, with or without the guard for rows masked whole.
    let probs = match g.only_user(&sm.output[0]) {
        Some(_) => sm.output[0].as_str(),
        None => g.nan_guarded(&sm.output[0])?,
    };
    let weighted = g
        .only_user(probs)
        .filter(|n| is(n, "MatMul") && n.input[0] == probs)?;
    let v = g.split_heads(&weighted.input[1], &[0, 2, 1, 3], heads)?;
    let merged = g
        .only_user(&weighted.output[0])
        .filter(|n| is(n, "Transpose") && perm(n) == Some(vec![0, 2, 1, 3]))?;
    let last = g
        .only_user(&merged.output[0])
        .filter(|n| is(n, "Reshape"))?;
    Some(Attention {
        q: q.to_string(),
        k: k.to_string(),
        v: v.to_string(),
        heads: heads.count,
        scale: cq * ck,
        last: *g.producer.get(last.output[0].as_str())?,
        output: last.output[0].clone(),
    })
}

fn is(n: &NodeProto, op: &str) -> bool {
    n.op_type == op && n.domain.is_empty()
}

fn perm(n: &NodeProto) -> Option<Vec<i64>> {
    n.attribute
        .iter()
        .find(|a| a.name == "perm")
        .map(|a| a.ints.clone())
}

fn int64s(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_type != DataType::INT64 as i32 {
        return None;
    }
    if t.raw_data.is_empty() {
        return Some(t.int64_data.clone());
    }
    let chunks = t.raw_data.chunks_exact(8);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect(),
    )
}

impl<'a> Graph<'a> {
    /// The node that makes `name`, when it is a standard `op`.
    pub(super) fn made_by(&self, name: &str, op: &str) -> Option<&'a NodeProto> {
        let n = &self.nodes[*self.producer.get(name)?];
        is(n, op).then_some(n)
    }

    /// The node that uses `name`, when it is the only use.
    pub(super) fn only_user(&self, name: &str) -> Option<&'a NodeProto> {
        if self.uses.get(name) != Some(&1) {
            return None;
        }
        Some(&self.nodes[*self.consumer.get(name)?])
    }

    /// `name` as `Mul(x, c)` of a float scalar initializer `c`: `x` and `c`.
    fn scaled(&self, name: &str) -> Option<(&'a str, f32)> {
        let mul = self.made_by(name, "Mul")?;
        let c = self.scalar(&mul.input[1])?;
        (c.is_finite() && c > 0.0).then_some((mul.input[0].as_str(), c))
    }

    /// The value of a float initializer of one element.
    pub(super) fn scalar(&self, name: &str) -> Option<f32> {
        let c = super::floats(self.inits.get(name)?)?;
        (c.len() == 1).then(|| c[0])
    }

    /// `name` as `Transpose(perm)` of `Reshape(x, [B, S, H, D])`, with `H` and `D`
    /// constants that agree with `heads` (`H` may be -1, inferred): `x`.
    fn split_heads(&self, name: &str, order: &[i64], heads: Heads) -> Option<&'a str> {
        let t = self.made_by(name, "Transpose")?;
        if perm(t)? != order {
            return None;
        }
        let r = self.made_by(&t.input[0], "Reshape")?;
        let shape = &r.input[1];
        let (h, d) = if let Some(s) = self.inits.get(shape.as_str()) {
            let s = int64s(s).filter(|s| s.len() == 4)?;
            (s[2], s[3])
        } else {
            // [B, S] read from the input at run time, H and D constants.
            let c = self.made_by(shape, "Concat")?;
            if c.input.len() != 4 {
                return None;
            }
            let one = |i: usize| {
                let v = int64s(self.inits.get(c.input[i].as_str())?)?;
                (v.len() == 1).then(|| v[0])
            };
            (one(2)?, one(3)?)
        };
        let agree =
            (h == heads.count || h == -1) && d.checked_mul(heads.count) == Some(heads.width);
        agree.then_some(r.input[0].as_str())
    }

    /// `Where(IsNaN(p), 0, p)`, the only use of `p` besides the `IsNaN`: its output.
    fn nan_guarded(&self, p: &str) -> Option<&'a str> {
        if self.uses.get(p) != Some(&2) {
            return None;
        }
        let users: Vec<&NodeProto> = self
            .nodes
            .iter()
            .filter(|n| n.input.iter().any(|x| x == p))
            .collect();
        let isnan = users.iter().find(|n| is(n, "IsNaN"))?;
        let guard = users.iter().find(|n| is(n, "Where"))?;
        let zero = super::floats(self.inits.get(guard.input[1].as_str())?)?;
        let ok = guard.input[0] == isnan.output[0]
            && guard.input[2] == p
            && zero.iter().all(|&z| z == 0.0)
            && self.uses.get(isnan.output[0].as_str()) == Some(&1);
        ok.then_some(guard.output[0].as_str())
    }

    /// Whether `name` is computed from the values of model input `input` and of no other
    /// (constants and other inputs' sizes aside), so that it is the padding mask in some
    /// form.
    fn comes_only_from(&self, name: &str, input: &str) -> bool {
        let mut todo = vec![name];
        let mut seen = HashSet::new();
        let mut reached = false;
        while let Some(x) = todo.pop() {
            if !seen.insert(x) {
                continue;
            }
            match self.producer.get(x) {
                // Sizes only (the exporter reads [B, S] from another input).
                Some(&i) if is(&self.nodes[i], "Shape") => {}
                Some(&i) => todo.extend(
                    self.nodes[i]
                        .input
                        .iter()
                        .map(String::as_str)
                        .filter(|s| !s.is_empty()),
                ),
                None if x == input => reached = true,
                None if self.inits.contains_key(x) => {}
                None => return false,
            }
        }
        reached
    }
}
