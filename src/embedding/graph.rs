//! Load-time rewrites of an embedding model's ONNX graph, so that weights shipped as int8
//! stay int8 in memory.
//!
//! The int8 export stores each weight as an int8 tensor `q` and a float `scale`, and
//! dequantizes in the graph (`Cast(q) * scale`). ONNX Runtime folds those constants at
//! load, so the model costs as much memory as the fp32 one and every product runs in
//! fp32. Two rewrites, each picked by measurement (see the README's figures):
//!
//! - **Every precision**: an embedding table (`Gather` over `Cast(q) * scale`) gathers the
//!   int8 rows first and dequantizes only those. The result is bit-identical (the same
//!   products, on fewer rows); the 30522 × 384 word table no longer becomes 45 MB of fp32.
//! - **[`Precision::Int8`]**: each `MatMul` by such a weight becomes ONNX Runtime's
//!   `MatMulNBits` with 8 bits, 32-row blocks and accuracy level 4 (activations quantized
//!   to int8 per block, integer dot products). The weights are exactly the shipped ones
//!   (`q + 128` with zero point 128, each block with its column's scale); the vectors
//!   differ slightly from exact ones, which is why it is an option.
//!
//! Anything that does not match a pattern exactly is left as it is.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{
    AttributeProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
};
use std::collections::{HashMap, HashSet};

/// How an embedding model computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Precision {
    /// The model's own arithmetic (fp32 products), as exported.
    #[default]
    Exact,
    /// Integer products on the int8 weights (`MatMulNBits`).
    Int8,
}

impl Precision {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "exact" => Some(Self::Exact),
            "int8" => Some(Self::Int8),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Int8 => "int8",
        }
    }
}

/// Rows of one `MatMulNBits` block.
const BLOCK: usize = 32;

/// What [`rewrite`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rewritten {
    pub(crate) gathers: usize,
    pub(crate) matmuls: usize,
}

/// `onnx` rewritten for `precision`, with what changed; `None` when nothing matched (or
/// the bytes are not a model this code understands: ONNX Runtime then says why).
pub(crate) fn rewrite(onnx: &[u8], precision: Precision) -> Option<(Vec<u8>, Rewritten)> {
    let mut model = ModelProto::parse_from_bytes(onnx).ok()?;
    let done = rewrite_model(&mut model, precision);
    if done == Rewritten::default() {
        return None;
    }
    Some((model.write_to_bytes().ok()?, done))
}

/// An int8 weight dequantized in the graph: `Cast(q) * scale`, each used only by the node
/// at hand.
struct Dequantized {
    /// Indices of the `Mul` and the `Cast` nodes.
    nodes: [usize; 2],
    q: String,
    scale: String,
}

struct Graph<'a> {
    nodes: &'a [NodeProto],
    producer: HashMap<&'a str, usize>,
    uses: HashMap<&'a str, usize>,
    inits: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> Graph<'a> {
    fn new(nodes: &'a [NodeProto], initializers: &'a [TensorProto]) -> Self {
        let mut producer = HashMap::new();
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for x in &n.input {
                *uses.entry(x.as_str()).or_default() += 1;
            }
        }
        let inits = initializers.iter().map(|t| (t.name.as_str(), t)).collect();
        Self {
            nodes,
            producer,
            uses,
            inits,
        }
    }

    /// `name` as `Cast(q) * scale` over int8 `q` and float `scale` initializers.
    fn dequantized(&self, name: &str) -> Option<Dequantized> {
        let mul_i = *self.producer.get(name)?;
        let mul = &self.nodes[mul_i];
        if mul.op_type != "Mul" || !mul.domain.is_empty() || mul.input.len() != 2 {
            return None;
        }
        let scale = self.inits.get(mul.input[1].as_str())?;
        let cast_i = *self.producer.get(mul.input[0].as_str())?;
        let cast = &self.nodes[cast_i];
        if cast.op_type != "Cast" || cast.input.len() != 1 {
            return None;
        }
        let q = self.inits.get(cast.input[0].as_str())?;
        let single = |o: &str| self.uses.get(o) == Some(&1);
        let ok = q.data_type == DataType::INT8 as i32
            && scale.data_type == DataType::FLOAT as i32
            && q.dims.len() == 2
            && !q.raw_data.is_empty()
            && single(&mul.output[0])
            && single(&cast.output[0]);
        ok.then(|| Dequantized {
            nodes: [mul_i, cast_i],
            q: q.name.clone(),
            scale: scale.name.clone(),
        })
    }
}

fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if !t.raw_data.is_empty() {
        if !t.raw_data.chunks_exact(4).remainder().is_empty() {
            return None;
        }
        return Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    Some(t.float_data.clone())
}

fn node(op: &str, domain: &str, inputs: &[&str], output: &str, name: &str) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.domain = domain.into();
    n.input = inputs.iter().map(|s| (*s).to_string()).collect();
    n.output = vec![output.to_string()];
    n.name = name.into();
    n
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn tensor(name: &str, dims: &[i64], ty: DataType, raw: Vec<u8>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = ty as i32;
    t.raw_data = raw;
    t
}

/// Replacement nodes for a `Gather` over a dequantized table (axis 0).
fn lean_gather(graph: &Graph<'_>, op: &NodeProto) -> Option<(Vec<NodeProto>, [usize; 2])> {
    if op.op_type != "Gather" || !op.domain.is_empty() || op.input.len() != 2 {
        return None;
    }
    if op.attribute.iter().any(|a| a.name == "axis" && a.i != 0) {
        return None;
    }
    let deq = graph.dequantized(&op.input[0])?;
    let weights = graph.inits[deq.q.as_str()];
    let scale = graph.inits[deq.scale.as_str()];
    let rows = weights.dims[0];
    // A scale per row is gathered with the rows; a scale per column (or one for all)
    // broadcasts as it is.
    let per_row = scale.dims.first() == Some(&rows) && rows > 1;
    // A per-row scale must keep its trailing axis ([rows, 1]) to broadcast over columns.
    if per_row && scale.dims.len() != 2 {
        return None;
    }
    if !per_row && scale.dims.first().is_some_and(|&r| r != 1) && scale.dims.len() > 1 {
        return None;
    }
    let (out_name, ids) = (op.output[0].as_str(), op.input[1].as_str());
    let (oq, of, os) = (
        format!("{out_name}__q"),
        format!("{out_name}__f"),
        format!("{out_name}__s"),
    );
    let mut cast = node("Cast", "", &[&oq], &of, &format!("{}__cast", op.name));
    cast.attribute.push(int_attr("to", DataType::FLOAT as i64));
    let mut out = vec![
        node(
            "Gather",
            "",
            &[&deq.q, ids],
            &oq,
            &format!("{}__rows", op.name),
        ),
        cast,
    ];
    if per_row {
        out.push(node(
            "Gather",
            "",
            &[&deq.scale, ids],
            &os,
            &format!("{}__scales", op.name),
        ));
        out.push(node(
            "Mul",
            "",
            &[&of, &os],
            out_name,
            &format!("{}__dequantize", op.name),
        ));
    } else {
        out.push(node(
            "Mul",
            "",
            &[&of, &deq.scale],
            out_name,
            &format!("{}__dequantize", op.name),
        ));
    }
    Some((out, deq.nodes))
}

/// `MatMulNBits` for a `MatMul` by a dequantized `[K, N]` weight with a scale per column.
fn int8_matmul(
    graph: &Graph<'_>,
    op: &NodeProto,
    new_inits: &mut Vec<TensorProto>,
) -> Option<(Vec<NodeProto>, [usize; 2])> {
    if op.op_type != "MatMul" || !op.domain.is_empty() || op.input.len() != 2 {
        return None;
    }
    let deq = graph.dequantized(&op.input[1])?;
    let weights = graph.inits[deq.q.as_str()];
    let (rows_k, cols) = (
        usize::try_from(weights.dims[0]).ok()?,
        usize::try_from(weights.dims[1]).ok()?,
    );
    let scale = floats(graph.inits[deq.scale.as_str()])?;
    if scale.len() != cols || weights.raw_data.len() != rows_k * cols || rows_k == 0 || cols == 0 {
        return None;
    }
    let blocks = rows_k.div_ceil(BLOCK);
    // B[op][block][j] = weights[block * BLOCK + j][op] + 128, padded with the zero point.
    let mut packed = vec![128u8; cols * blocks * BLOCK];
    for (row, chunk) in weights.raw_data.chunks_exact(cols).enumerate() {
        for (col, &v) in chunk.iter().enumerate() {
            // int8 to offset binary: the two's complement byte with its top bit flipped.
            packed[col * blocks * BLOCK + row] = v ^ 0x80;
        }
    }
    let scales: Vec<u8> = scale
        .iter()
        .flat_map(|s| std::iter::repeat_n(*s, blocks))
        .flat_map(f32::to_le_bytes)
        .collect();
    let base = format!("{}__nbits", op.name);
    let (b, s, z) = (
        format!("{base}_b"),
        format!("{base}_scales"),
        format!("{base}_zero"),
    );
    let (cols64, blocks64) = (cols as i64, blocks as i64);
    new_inits.push(tensor(
        &b,
        &[cols64, blocks64, BLOCK as i64],
        DataType::UINT8,
        packed,
    ));
    new_inits.push(tensor(&s, &[cols64, blocks64], DataType::FLOAT, scales));
    new_inits.push(tensor(
        &z,
        &[cols64, blocks64],
        DataType::UINT8,
        vec![128u8; cols * blocks],
    ));
    let mut mm = node(
        "MatMulNBits",
        "com.microsoft",
        &[&op.input[0], &b, &s, &z],
        &op.output[0],
        &base,
    );
    mm.attribute = vec![
        int_attr("K", rows_k as i64),
        int_attr("N", cols64),
        int_attr("bits", 8),
        int_attr("block_size", BLOCK as i64),
        int_attr("accuracy_level", 4),
    ];
    Some((vec![mm], deq.nodes))
}

fn rewrite_model(model: &mut ModelProto, precision: Precision) -> Rewritten {
    let Some(graph) = model.graph.as_mut() else {
        return Rewritten::default();
    };
    let mut done = Rewritten::default();
    let mut replaced: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    let mut new_inits = Vec::new();
    {
        let g = Graph::new(&graph.node, &graph.initializer);
        for (i, n) in graph.node.iter().enumerate() {
            if let Some((nodes, gone)) = lean_gather(&g, n) {
                done.gathers += 1;
                replaced.insert(i, nodes);
                dropped.extend(gone);
            } else if precision == Precision::Int8 {
                if let Some((nodes, gone)) = int8_matmul(&g, n, &mut new_inits) {
                    done.matmuls += 1;
                    replaced.insert(i, nodes);
                    dropped.extend(gone);
                }
            }
        }
    }
    if done == Rewritten::default() {
        return done;
    }
    // In place of each node, its replacement: every input of those comes from an
    // initializer or from before the node, so the order stays topological.
    let old = std::mem::take(&mut graph.node);
    for (i, n) in old.into_iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        match replaced.remove(&i) {
            Some(nodes) => graph.node.extend(nodes),
            None => graph.node.push(n),
        }
    }
    graph.initializer.extend(new_inits);
    let used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    if done.matmuls > 0
        && !model
            .opset_import
            .iter()
            .any(|o| o.domain == "com.microsoft")
    {
        let mut ms = OperatorSetIdProto::new();
        ms.domain = "com.microsoft".into();
        ms.version = 1;
        model.opset_import.push(ms);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_bytes() -> Vec<u8> {
        let path = crate::paths::models_dir().join("all-MiniLM-L6-v2/model.onnx");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "this test needs the default embedding model at {}: run `node scripts/models.js` ({e})",
                path.display()
            )
        })
    }

    #[test]
    fn the_default_model_keeps_its_int8_tables_and_weights() {
        let raw = model_bytes();
        let (exact, done) = rewrite(&raw, Precision::Exact).unwrap();
        assert_eq!(
            done,
            Rewritten {
                gathers: 2,
                matmuls: 0
            }
        );
        let (int8, done) = rewrite(&raw, Precision::Int8).unwrap();
        assert_eq!(
            done,
            Rewritten {
                gathers: 2,
                matmuls: 36
            }
        );
        let m = ModelProto::parse_from_bytes(&int8).unwrap();
        let g = m.graph.as_ref().unwrap();
        assert_eq!(
            g.node.iter().filter(|n| n.op_type == "MatMulNBits").count(),
            36
        );
        // No weight is dequantized in the graph any more: no Cast of an initializer.
        let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert!(!g
            .node
            .iter()
            .any(|n| n.op_type == "Cast" && inits.contains(n.input[0].as_str())));
        // The exact model is the same size: nothing was dequantized into the file.
        assert!(
            exact.len() <= raw.len() + 4096,
            "{} > {}",
            exact.len(),
            raw.len()
        );
    }

    #[test]
    fn a_model_without_the_pattern_is_left_alone() {
        assert!(rewrite(b"not a model", Precision::Int8).is_none());
        let empty = ModelProto::new().write_to_bytes().unwrap();
        assert!(rewrite(&empty, Precision::Int8).is_none());
    }

    #[test]
    fn offset_binary_is_the_int8_value_plus_128() {
        for v in [-128i8, -1, 0, 1, 127] {
            assert_eq!(i16::from(v.to_le_bytes()[0] ^ 0x80), i16::from(v) + 128);
        }
    }
}
