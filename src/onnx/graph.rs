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
//!   `DynamicQuantizeMatMul` on exactly the shipped weights: each call quantizes its
//!   activations to 8 bits with one scale, and the products run in integers. One scale
//!   is too coarse for a transformer's activations, where a few channels (the same on
//!   every text) are ten times larger than the rest: alone it reached a cosine of only
//!   0.982 against exact vectors. So where the [`OUTLIERS`] largest input channels of
//!   a product (found by running [`calibration`] on a few texts at load) stand out,
//!   they are zeroed before quantizing and computed in fp32 from the same weights' rows
//!   instead, and a bias added to the product goes into the kernel. That brings the
//!   minimum cosine above 0.998 for about a tenth of the throughput that plain
//!   `DynamicQuantizeMatMul` has.
//!
//! - **Every precision**: each layer's self-attention, thirty-odd small nodes as
//!   `torch.onnx` exports it, becomes one `MultiHeadAttention` node (see [`attention`]);
//!   the vectors do not change. And each GELU, five elementwise nodes, becomes one `Gelu`
//!   (see [`gelu`]); values move by about a rounding step. With [`Precision::Int8`], a
//!   layer's queries, keys and values come from one integer product (see [`qkv`]).
//!
//! Anything that does not match a pattern exactly is left as it is.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TypeProto, ValueInfoProto,
};
use std::collections::{HashMap, HashSet};

mod attention;
mod gelu;
mod qkv;
mod weights;
pub(crate) use attention::Heads;
pub(crate) use weights::Int8Weights;

/// How an embedding model computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Precision {
    /// The model's own arithmetic (fp32 products), as exported.
    #[default]
    Exact,
    /// Integer products on the int8 weights (`DynamicQuantizeMatMul`, outlier channels
    /// in fp32).
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

/// Read from an option as its name, `'exact'` or `'int8'`.
impl<'de> serde::Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "must be 'exact' or 'int8', got {}",
                crate::error::echo(&s)
            ))
        })
    }
}

/// What [`rewrite`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rewritten {
    pub(crate) gathers: usize,
    pub(crate) matmuls: usize,
    pub(crate) attentions: usize,
    pub(crate) gelus: usize,
    /// Attentions whose queries, keys and values come from one integer product.
    pub(crate) merged_projections: usize,
    /// Integer products whose weights are uint8 (see [`Int8Weights`]).
    pub(crate) unsigned_products: usize,
}

/// `onnx` rewritten for `precision`, with what changed; `None` when nothing matched (or
/// the bytes are not a model this code understands: ONNX Runtime then says why).
///
/// For [`Precision::Int8`], `outliers` are the channels computed in fp32 (from
/// [`calibration`]); an input without any is quantized whole. `heads` is the model's
/// attention size, from its config: without it, attention is left as exported.
/// `weights` says how the integer products take their weights on this CPU.
pub(crate) fn rewrite(
    onnx: &[u8],
    precision: Precision,
    outliers: &Outliers,
    heads: Option<Heads>,
    weights: Int8Weights,
) -> Option<(Vec<u8>, Rewritten)> {
    let mut model = ModelProto::parse_from_bytes(onnx).ok()?;
    let mode = match precision {
        Precision::Exact => Mode::Exact,
        Precision::Int8 => Mode::Int8(outliers),
    };
    let (mut done, _) = rewrite_model(&mut model, mode);
    if let Some(heads) = heads {
        done.attentions = attention::fuse(&mut model, heads);
        if precision == Precision::Int8 {
            done.merged_projections = qkv::merge(&mut model);
        }
    }
    done.gelus = gelu::fuse(&mut model);
    // Last, once every product has its final weights (merged or not).
    if weights == Int8Weights::Unsigned {
        done.unsigned_products = weights::make_unsigned(&mut model);
    }
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
    /// A consumer of each tensor: the only one where `uses` is 1.
    consumer: HashMap<&'a str, usize>,
    inits: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> Graph<'a> {
    fn new(nodes: &'a [NodeProto], initializers: &'a [TensorProto]) -> Self {
        let mut producer = HashMap::new();
        let mut uses: HashMap<&str, usize> = HashMap::new();
        let mut consumer = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for x in &n.input {
                *uses.entry(x.as_str()).or_default() += 1;
                consumer.insert(x.as_str(), i);
            }
        }
        let inits = initializers.iter().map(|t| (t.name.as_str(), t)).collect();
        Self {
            nodes,
            producer,
            uses,
            consumer,
            inits,
        }
    }

    /// The `Add` of a constant bias of `width` floats that is the only use of `name`:
    /// its index, its bias and its output.
    fn bias_add(&self, name: &str, width: usize) -> Option<(usize, &'a str, &'a str)> {
        if self.uses.get(name) != Some(&1) {
            return None;
        }
        let i = *self.consumer.get(name)?;
        let add = &self.nodes[i];
        if add.op_type != "Add" || !add.domain.is_empty() || add.input.len() != 2 {
            return None;
        }
        let other = if add.input[0] == name {
            &add.input[1]
        } else {
            &add.input[0]
        };
        let bias = self.inits.get(other.as_str())?;
        let ok = bias.data_type == DataType::FLOAT as i32
            && bias.dims.len() == 1
            && usize::try_from(bias.dims[0]) == Ok(width);
        ok.then_some((i, bias.name.as_str(), add.output[0].as_str()))
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

/// Input channels of each integer product computed in fp32 instead: the few whose
/// activations dwarf the rest (see [`outlier_channels`]).
pub(crate) const OUTLIERS: usize = 8;

/// For each input of an integer product (by tensor name), its outlier channels.
pub(crate) type Outliers = HashMap<String, Vec<i64>>;

/// What [`rewrite_model`] does beyond the lean gathers.
#[derive(Clone, Copy)]
enum Mode<'a> {
    Exact,
    /// Integer products without outliers, and the products' inputs as extra outputs.
    Calibration,
    Int8(&'a Outliers),
}

/// Computing outlier channels in fp32 must at least halve the range the rest is
/// quantized over to be worth its extra nodes (each costs a few microseconds a call).
const WORTH_IT: f32 = 2.0;

/// The `count` channels of largest magnitude, ascending, when setting them apart at
/// least halves the largest magnitude left (else `None`: the input is quantized whole);
/// `absmax` holds each channel's largest absolute activation over the calibration texts.
/// Layer-norm outputs and some GELU outputs have a few channels ten times larger than
/// the rest; attention outputs do not, and one scale suits them.
pub(crate) fn outlier_channels(absmax: &[f32], count: usize) -> Option<Vec<i64>> {
    let mut order: Vec<usize> = (0..absmax.len()).collect();
    order.sort_by(|&a, &b| absmax[b].total_cmp(&absmax[a]).then(a.cmp(&b)));
    let (top, rest) = order.split_at(count.min(order.len()));
    let (largest, left) = (
        top.first().map_or(0.0, |&c| absmax[c]),
        rest.first().map_or(0.0, |&c| absmax[c]),
    );
    if top.is_empty() || largest.is_nan() || largest < WORTH_IT * left {
        return None;
    }
    let mut top: Vec<i64> = top.iter().map(|&c| c as i64).collect();
    top.sort_unstable();
    Some(top)
}

/// A model to measure activations with: every int8 product quantized as in
/// [`Precision::Int8`] but without outliers, and the inputs of those products (their
/// names are `inputs`) added to its outputs.
pub(crate) struct Calibration {
    pub(crate) onnx: Vec<u8>,
    pub(crate) inputs: Vec<String>,
}

/// The calibration model for `onnx`; `None` when it has no int8 product. Its products
/// take their weights as the real model's will (`weights`): saturated products upstream
/// would move the activations it measures.
pub(crate) fn calibration(onnx: &[u8], weights: Int8Weights) -> Option<Calibration> {
    let mut model = ModelProto::parse_from_bytes(onnx).ok()?;
    let (done, inputs) = rewrite_model(&mut model, Mode::Calibration);
    if done.matmuls == 0 {
        return None;
    }
    if weights == Int8Weights::Unsigned {
        weights::make_unsigned(&mut model);
    }
    let graph = model.graph.as_mut()?;
    for name in &inputs {
        let mut tensor = type_proto::Tensor::new();
        tensor.elem_type = DataType::FLOAT as i32;
        let mut ty = TypeProto::new();
        ty.value = Some(type_proto::Value::TensorType(tensor));
        let mut out = ValueInfoProto::new();
        out.name.clone_from(name);
        out.type_ = Some(ty).into();
        graph.output.push(out);
    }
    Some(Calibration {
        onnx: model.write_to_bytes().ok()?,
        inputs,
    })
}

/// Per input of integer products, the nodes they share: the input with its outlier
/// channels zeroed, and those channels alone.
struct Split {
    inliers: String,
    outliers: String,
}

/// Floats as little-endian bytes, as `raw_data` holds them.
fn float_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The nodes that split `input` (of `width` channels) into its inliers (the outlier
/// `channels` zeroed) and its outliers (those channels alone).
fn split_input(
    input: &str,
    width: usize,
    channels: &[i64],
    new_inits: &mut Vec<TensorProto>,
) -> (Split, Vec<NodeProto>) {
    let (mask, idx) = (
        format!("{input}__inlier_mask"),
        format!("{input}__outlier_channels"),
    );
    let mut ones = vec![1f32; width];
    for &c in channels {
        ones[c as usize] = 0.0;
    }
    new_inits.push(tensor(
        &mask,
        &[width as i64],
        DataType::FLOAT,
        float_bytes(&ones),
    ));
    new_inits.push(tensor(
        &idx,
        &[channels.len() as i64],
        DataType::INT64,
        channels.iter().flat_map(|v| v.to_le_bytes()).collect(),
    ));
    let split = Split {
        inliers: format!("{input}__inliers"),
        outliers: format!("{input}__outliers"),
    };
    let zeroed = node("Mul", "", &[input, &mask], &split.inliers, &split.inliers);
    let mut gather = node(
        "Gather",
        "",
        &[input, &idx],
        &split.outliers,
        &split.outliers,
    );
    gather.attribute.push(int_attr("axis", -1));
    (split, vec![zeroed, gather])
}

/// Integer inference for a `MatMul` by a dequantized `[K, N]` weight with a scale per
/// column: ONNX Runtime's `DynamicQuantizeMatMul` (activations quantized to 8 bits per
/// call, integer products on the shipped weights), plus, when `outliers` names channels,
/// those channels' share computed in fp32 from the same weights' rows.
fn int8_matmul(
    graph: &Graph<'_>,
    op: &NodeProto,
    outliers: Option<&[i64]>,
    splits: &mut HashMap<String, Split>,
    new_inits: &mut Vec<TensorProto>,
) -> Option<(Vec<NodeProto>, Vec<usize>)> {
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
    let outliers = outliers.filter(|c| {
        !c.is_empty()
            && c.iter()
                .all(|&i| usize::try_from(i).is_ok_and(|i| i < rows_k))
    });
    let input = op.input[0].as_str();
    let mut gone = deq.nodes.to_vec();
    // A bias added to the product goes into the kernel (one pass over the output less).
    let (bias, output) = match graph.bias_add(&op.output[0], cols) {
        Some((add, bias, output)) => {
            gone.push(add);
            (bias, output)
        }
        None => ("", op.output[0].as_str()),
    };
    let base = format!("{}__int8", op.name);
    let (scales, zeros) = (format!("{base}_scale"), format!("{base}_zero"));
    new_inits.push(tensor(
        &scales,
        &[cols as i64],
        DataType::FLOAT,
        float_bytes(&scale),
    ));
    new_inits.push(tensor(
        &zeros,
        &[cols as i64],
        DataType::INT8,
        vec![0; cols],
    ));
    let integer_product = |a: &str, out: &str| {
        let mut dq = node(
            "DynamicQuantizeMatMul",
            "com.microsoft",
            &[a, &deq.q, &scales, &zeros],
            out,
            &base,
        );
        if !bias.is_empty() {
            dq.input.push(bias.to_string());
        }
        dq
    };
    let Some(channels) = outliers else {
        return Some((vec![integer_product(input, output)], gone));
    };
    let mut nodes = Vec::new();
    if !splits.contains_key(input) {
        let (split, split_nodes) = split_input(input, rows_k, channels, new_inits);
        nodes.extend(split_nodes);
        splits.insert(input.to_string(), split);
    }
    let split = &splits[input];
    // The outlier rows of the weight, dequantized as the original graph would.
    let rows = format!("{base}_outlier_rows");
    let dequantized: Vec<f32> = channels
        .iter()
        .flat_map(|&c| {
            let row = &weights.raw_data[c as usize * cols..(c as usize + 1) * cols];
            row.iter().zip(&scale).map(|(&q, s)| f32::from(q as i8) * s)
        })
        .collect();
    new_inits.push(tensor(
        &rows,
        &[channels.len() as i64, cols as i64],
        DataType::FLOAT,
        float_bytes(&dequantized),
    ));
    let (integer, fp32) = (format!("{output}__int8"), format!("{output}__fp32"));
    nodes.push(integer_product(&split.inliers, &integer));
    nodes.push(node("MatMul", "", &[&split.outliers, &rows], &fp32, &fp32));
    nodes.push(node(
        "Add",
        "",
        &[&integer, &fp32],
        output,
        &format!("{base}_sum"),
    ));
    Some((nodes, gone))
}

/// Drop the initializers no node reads any more (nor the graph outputs).
fn drop_unused_initializers(graph: &mut GraphProto) {
    let used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializer.retain(|t| used.contains(&t.name));
}

/// Declare ONNX Runtime's operator domain, which the fused and integer nodes are from.
fn ensure_microsoft_domain(model: &mut ModelProto) {
    if !model
        .opset_import
        .iter()
        .any(|o| o.domain == "com.microsoft")
    {
        let mut ms = OperatorSetIdProto::new();
        ms.domain = "com.microsoft".into();
        ms.version = 1;
        model.opset_import.push(ms);
    }
}

/// Rewrites `model` in place; returns what changed and the inputs of the integer
/// products, in graph order.
fn rewrite_model(model: &mut ModelProto, mode: Mode<'_>) -> (Rewritten, Vec<String>) {
    let Some(graph) = model.graph.as_mut() else {
        return (Rewritten::default(), Vec::new());
    };
    let mut done = Rewritten::default();
    let mut replaced: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    let mut new_inits = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    let mut splits = HashMap::new();
    {
        let g = Graph::new(&graph.node, &graph.initializer);
        for (i, n) in graph.node.iter().enumerate() {
            if let Some((nodes, gone)) = lean_gather(&g, n) {
                done.gathers += 1;
                replaced.insert(i, nodes);
                dropped.extend(gone);
                continue;
            }
            let outliers = match mode {
                Mode::Exact => continue,
                Mode::Calibration => None,
                Mode::Int8(o) => n.input.first().and_then(|x| o.get(x)).map(Vec::as_slice),
            };
            if let Some((nodes, gone)) = int8_matmul(&g, n, outliers, &mut splits, &mut new_inits) {
                done.matmuls += 1;
                if !inputs.contains(&n.input[0]) {
                    inputs.push(n.input[0].clone());
                }
                replaced.insert(i, nodes);
                dropped.extend(gone);
            }
        }
    }
    if done == Rewritten::default() {
        return (done, inputs);
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
    drop_unused_initializers(graph);
    if done.matmuls > 0 {
        ensure_microsoft_domain(model);
    }
    (done, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weights as shipped: the tests below check the graphs, not the CPU's choice.
    const S: Int8Weights = Int8Weights::Signed;

    /// all-MiniLM-L6-v2's attention.
    const HEADS: Option<Heads> = Some(Heads {
        count: 12,
        width: 384,
    });

    fn model_bytes() -> Vec<u8> {
        let path = crate::paths::models_dir().join("all-MiniLM-L6-v2/model.onnx");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "this test needs the default embedding model at {}: run `node scripts/models.js` ({e})",
                path.display()
            )
        })
    }

    fn parse(bytes: &[u8]) -> ModelProto {
        ModelProto::parse_from_bytes(bytes).unwrap()
    }

    /// The same outlier `channels` for every integer product's input of `raw`.
    fn on_every_input(raw: &[u8], channels: &[i64]) -> Outliers {
        let c = calibration(raw, S).unwrap();
        c.inputs
            .into_iter()
            .map(|i| (i, channels.to_vec()))
            .collect()
    }

    /// Still in topological order, and nothing reads a tensor that is gone.
    fn assert_topological(g: &GraphProto) {
        let mut known: HashSet<&str> = g
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .chain(g.input.iter().map(|i| i.name.as_str()))
            .chain([""])
            .collect();
        for n in &g.node {
            for i in &n.input {
                assert!(
                    known.contains(i.as_str()),
                    "{} reads {i} before it exists",
                    n.name
                );
            }
            known.extend(n.output.iter().map(String::as_str));
        }
        assert!(g.output.iter().all(|o| known.contains(o.name.as_str())));
    }

    fn count(m: &ModelProto, op: &str) -> usize {
        let g = m.graph.as_ref().unwrap();
        g.node.iter().filter(|n| n.op_type == op).count()
    }

    #[test]
    fn the_default_model_keeps_its_int8_tables_and_weights() {
        // Each product on its own: attention left as exported (see the tests below for
        // what the model's heads add).
        let raw = model_bytes();
        let none = Outliers::new();
        let (exact, done) = rewrite(&raw, Precision::Exact, &none, None, S).unwrap();
        assert_eq!(
            done,
            Rewritten {
                gathers: 2,
                matmuls: 0,
                attentions: 0,
                gelus: 6,
                merged_projections: 0,
                unsigned_products: 0,
            }
        );
        // The exact model is the same size: nothing was dequantized into the file.
        assert!(
            exact.len() <= raw.len() + 4096,
            "{} > {}",
            exact.len(),
            raw.len()
        );
        let (int8, done) = rewrite(&raw, Precision::Int8, &none, None, S).unwrap();
        assert_eq!(
            done,
            Rewritten {
                gathers: 2,
                matmuls: 36,
                attentions: 0,
                gelus: 6,
                merged_projections: 0,
                unsigned_products: 0,
            }
        );
        let m = parse(&int8);
        assert_eq!(count(&m, "DynamicQuantizeMatMul"), 36);
        let g = m.graph.as_ref().unwrap();
        // Every product's bias went into its kernel, and its Add is gone.
        assert!(g
            .node
            .iter()
            .filter(|n| n.op_type == "DynamicQuantizeMatMul")
            .all(|n| n.input.len() == 5));
        assert_eq!(count(&m, "Add") + 36, count(&parse(&exact), "Add"));
        // No weight is dequantized in the graph any more: no Cast of an initializer.
        let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert!(!g
            .node
            .iter()
            .any(|n| n.op_type == "Cast" && inits.contains(n.input[0].as_str())));
    }

    #[test]
    fn calibration_outputs_each_product_input_once() {
        let raw = model_bytes();
        let c = calibration(&raw, S).unwrap();
        // Per layer: the attention's input (shared by Q, K and V), the attention's
        // output, the feed-forward input and the GELU output.
        assert_eq!(c.inputs.len(), 24);
        let m = parse(&c.onnx);
        let outputs: Vec<&str> = m
            .graph
            .as_ref()
            .unwrap()
            .output
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        for i in &c.inputs {
            assert!(outputs.contains(&i.as_str()), "{i} is not an output");
        }
        assert_eq!(count(&m, "DynamicQuantizeMatMul"), 36);
    }

    #[test]
    fn outlier_channels_are_computed_in_fp32_from_the_shipped_rows() {
        let raw = model_bytes();
        let outliers = on_every_input(&raw, &[3, 62, 99]);
        let (int8, done) = rewrite(&raw, Precision::Int8, &outliers, None, S).unwrap();
        assert_eq!(done.matmuls, 36);
        let m = parse(&int8);
        // One split (Mul by a mask, Gather of the channels) per input, shared by its
        // products; one fp32 product and one sum per product.
        assert_eq!(count(&m, "DynamicQuantizeMatMul"), 36);
        assert_eq!(
            count(&m, "Add")
                - count(
                    &parse(
                        &rewrite(&raw, Precision::Int8, &Outliers::new(), None, S)
                            .unwrap()
                            .0
                    ),
                    "Add"
                ),
            36
        );
        let g = m.graph.as_ref().unwrap();
        let gathers = g
            .node
            .iter()
            .filter(|n| n.op_type == "Gather" && n.output[0].ends_with("__outliers"))
            .count();
        assert_eq!(gathers, 24);
        // The fp32 rows are the int8 rows times the column scales.
        let orig = parse(&raw);
        let og = Graph::new(
            &orig.graph.as_ref().unwrap().node,
            &orig.graph.as_ref().unwrap().initializer,
        );
        let mm = orig
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .find(|n| n.op_type == "MatMul" && og.dequantized(&n.input[1]).is_some())
            .unwrap();
        let deq = og.dequantized(&mm.input[1]).unwrap();
        let q = og.inits[deq.q.as_str()];
        let scale = floats(og.inits[deq.scale.as_str()]).unwrap();
        let cols = q.dims[1] as usize;
        let rows = g
            .initializer
            .iter()
            .find(|t| t.name == format!("{}__int8_outlier_rows", mm.name))
            .unwrap();
        assert_eq!(rows.dims, vec![3, cols as i64]);
        let got = floats(rows).unwrap();
        for (r, ch) in [3usize, 62, 99].iter().enumerate() {
            for col in [0, cols / 2, cols - 1] {
                let want = f32::from(q.raw_data[ch * cols + col] as i8) * scale[col];
                assert_eq!(got[r * cols + col].to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn outliers_are_the_largest_channels_in_order_when_they_stand_out() {
        let a = [0.5, 9.0, 1.0, 27.0, 0.1, 9.0];
        assert_eq!(outlier_channels(&a, 3), Some(vec![1, 3, 5]));
        // Setting 27 apart leaves 9: worth it.
        assert_eq!(outlier_channels(&a, 1), Some(vec![3]));
        // Ties go to the lower channel: 27 and the first 9 set apart leave the other 9.
        assert_eq!(outlier_channels(&a, 2), Some(vec![1, 3]));
        // Evenly spread activations: nothing to gain.
        assert_eq!(outlier_channels(&[1.0, 1.2, 0.9, 1.1], 1), None);
        assert_eq!(outlier_channels(&[f32::NAN, 1.0], 1), None);
        assert_eq!(outlier_channels(&[], 8), None);
        // Every channel set apart leaves nothing: worth it while anything is large.
        assert_eq!(outlier_channels(&[2.0, 3.0], 8), Some(vec![0, 1]));
    }

    #[test]
    fn out_of_range_outliers_fall_back_to_a_whole_product() {
        let raw = model_bytes();
        let outliers = on_every_input(&raw, &[100_000]);
        let (int8, _) = rewrite(&raw, Precision::Int8, &outliers, None, S).unwrap();
        let m = parse(&int8);
        assert_eq!(count(&m, "DynamicQuantizeMatMul"), 36);
        assert!(!m
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .any(|n| n.output[0].ends_with("__outliers")));
    }

    #[test]
    fn attention_becomes_one_node_per_layer_when_the_config_agrees() {
        let raw = model_bytes();
        let none = Outliers::new();
        let (plain, done) = rewrite(&raw, Precision::Exact, &none, None, S).unwrap();
        assert_eq!(done.attentions, 0);
        let plain = parse(&plain);
        assert_eq!(count(&plain, "Softmax"), 6);
        for precision in [Precision::Exact, Precision::Int8] {
            let (fused, done) = rewrite(&raw, precision, &none, HEADS, S).unwrap();
            assert_eq!(done.attentions, 6);
            let m = parse(&fused);
            assert_eq!(count(&m, "MultiHeadAttention"), 6);
            for op in ["Softmax", "IsNaN", "Transpose", "Where"] {
                assert_eq!(count(&m, op), 0, "{op} left in {precision:?}");
            }
            let g = m.graph.as_ref().unwrap();
            if precision == Precision::Exact {
                assert!(g.node.len() + 150 < plain.graph.as_ref().unwrap().node.len());
            }
            for n in g.node.iter().filter(|n| n.op_type == "MultiHeadAttention") {
                assert_eq!(n.domain, "com.microsoft");
                assert_eq!(n.input.len(), 5);
                assert_eq!(n.input[4], "attention_mask__int32");
                let attr = |k: &str| n.attribute.iter().find(|a| a.name == k).unwrap();
                assert_eq!(attr("num_heads").i, 12);
                assert!((attr("scale").f - 32f32.sqrt().recip()).abs() < 1e-6);
            }
            assert_topological(g);
        }
        // A config that disagrees with the graph's head size leaves attention alone.
        for heads in [
            Heads {
                count: 6,
                width: 384,
            },
            Heads {
                count: 12,
                width: 768,
            },
            Heads { count: 0, width: 0 },
        ] {
            let (_, done) = rewrite(&raw, Precision::Exact, &none, Some(heads), S).unwrap();
            assert_eq!(done.attentions, 0, "{heads:?}");
        }
    }

    #[test]
    fn gelu_becomes_one_node_in_both_precisions() {
        let raw = model_bytes();
        let none = Outliers::new();
        let exported = parse(&raw);
        for precision in [Precision::Exact, Precision::Int8] {
            let m = parse(&rewrite(&raw, precision, &none, HEADS, S).unwrap().0);
            assert_eq!(count(&m, "Gelu"), 6);
            assert_eq!(count(&m, "Erf"), 0);
            assert_eq!(count(&m, "Div"), 0);
            let g = m.graph.as_ref().unwrap();
            for n in g.node.iter().filter(|n| n.op_type == "Gelu") {
                assert_eq!(n.domain, "com.microsoft");
                // Its input is what the exported Div divided by √2.
                let div = exported
                    .graph
                    .as_ref()
                    .unwrap()
                    .node
                    .iter()
                    .filter(|d| d.op_type == "Div")
                    .any(|d| d.input[0] == n.input[0]);
                assert!(div || precision == Precision::Int8, "{}", n.input[0]);
            }
        }
    }

    #[test]
    fn int8_queries_keys_and_values_come_from_one_product() {
        let raw = model_bytes();
        let orig = parse(&raw);
        let og = Graph::new(
            &orig.graph.as_ref().unwrap().node,
            &orig.graph.as_ref().unwrap().initializer,
        );
        // Layer 0's query, key and value weights, in the exported graph's order.
        let weights: Vec<&TensorProto> = orig
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .filter(|n| n.op_type == "MatMul")
            .filter_map(|n| og.dequantized(&n.input[1]))
            .take(3)
            .map(|d| og.inits[d.q.as_str()])
            .collect();
        for outliers in [Outliers::new(), on_every_input(&raw, &[3, 62, 99])] {
            let (int8, done) = rewrite(&raw, Precision::Int8, &outliers, HEADS, S).unwrap();
            assert_eq!(done.merged_projections, 6);
            let m = parse(&int8);
            assert_eq!(count(&m, "DynamicQuantizeMatMul"), 36 - 12);
            assert_eq!(count(&m, "Split"), 6);
            let g = m.graph.as_ref().unwrap();
            let split_outputs: HashSet<&str> = g
                .node
                .iter()
                .filter(|n| n.op_type == "Split")
                .flat_map(|n| n.output.iter().map(String::as_str))
                .collect();
            for n in g.node.iter().filter(|n| n.op_type == "MultiHeadAttention") {
                assert!(n.input[..3]
                    .iter()
                    .all(|i| split_outputs.contains(i.as_str())));
            }
            // Row r of the merged weight is row r of the query, key and value weights.
            let merged = g
                .initializer
                .iter()
                .find(|t| t.name.ends_with("__qkv_weight"))
                .unwrap();
            let (k, n) = (weights[0].dims[0] as usize, weights[0].dims[1] as usize);
            assert_eq!(merged.dims, vec![k as i64, 3 * n as i64]);
            for r in [0, k / 2, k - 1] {
                for (i, w) in weights.iter().enumerate() {
                    assert_eq!(
                        merged.raw_data[r * 3 * n + i * n..r * 3 * n + (i + 1) * n],
                        w.raw_data[r * n..(r + 1) * n]
                    );
                }
            }
            if !outliers.is_empty() {
                let rows = g
                    .initializer
                    .iter()
                    .find(|t| t.name.ends_with("__qkv_outlier_rows"))
                    .unwrap();
                assert_eq!(rows.dims, vec![3, 3 * n as i64]);
            }
            assert_topological(g);
        }
        // Exact keeps its three products.
        let (_, done) = rewrite(&raw, Precision::Exact, &Outliers::new(), HEADS, S).unwrap();
        assert_eq!(done.merged_projections, 0);
    }

    #[test]
    fn unsigned_weights_are_the_signed_ones_plus_128_with_a_zero_point_of_128() {
        let raw = model_bytes();
        for outliers in [Outliers::new(), on_every_input(&raw, &[3, 62, 99])] {
            let (signed, s_done) = rewrite(&raw, Precision::Int8, &outliers, HEADS, S).unwrap();
            let (unsigned, u_done) = rewrite(
                &raw,
                Precision::Int8,
                &outliers,
                HEADS,
                Int8Weights::Unsigned,
            )
            .unwrap();
            assert_eq!(s_done.unsigned_products, 0);
            let (s, u) = (parse(&signed), parse(&unsigned));
            let products = count(&u, "DynamicQuantizeMatMul");
            assert_eq!(u_done.unsigned_products, products);
            assert_eq!(products, 24);
            let (sg, ug) = (s.graph.as_ref().unwrap(), u.graph.as_ref().unwrap());
            let init = |g: &GraphProto, name: &str| {
                g.initializer
                    .iter()
                    .find(|t| t.name == name)
                    .unwrap()
                    .clone()
            };
            for (sn, un) in sg.node.iter().zip(&ug.node) {
                assert_eq!(sn.input, un.input);
                if un.op_type != "DynamicQuantizeMatMul" {
                    continue;
                }
                let (sw, uw) = (init(sg, &sn.input[1]), init(ug, &un.input[1]));
                assert_eq!(sw.data_type, DataType::INT8 as i32);
                assert_eq!(uw.data_type, DataType::UINT8 as i32);
                assert_eq!(sw.dims, uw.dims);
                for (&q, &w) in sw.raw_data.iter().zip(&uw.raw_data) {
                    assert_eq!(i32::from(w), i32::from(q as i8) + 128);
                }
                let z = init(ug, &un.input[3]);
                assert_eq!(z.data_type, DataType::UINT8 as i32);
                assert!(z.raw_data.iter().all(|&b| b == 128));
            }
            assert_topological(ug);
        }
        // The calibration model's products too; an exact model has none to change.
        let c = parse(&calibration(&raw, Int8Weights::Unsigned).unwrap().onnx);
        let g = c.graph.as_ref().unwrap();
        let products: Vec<&NodeProto> = g
            .node
            .iter()
            .filter(|n| n.op_type == "DynamicQuantizeMatMul")
            .collect();
        assert_eq!(products.len(), 36);
        for n in products {
            for at in [1, 3] {
                let t = g
                    .initializer
                    .iter()
                    .find(|t| t.name == n.input[at])
                    .unwrap();
                assert_eq!(t.data_type, DataType::UINT8 as i32);
            }
        }
        let (_, done) = rewrite(
            &raw,
            Precision::Exact,
            &Outliers::new(),
            HEADS,
            Int8Weights::Unsigned,
        )
        .unwrap();
        assert_eq!(done.unsigned_products, 0);
    }

    #[test]
    fn a_model_without_the_pattern_is_left_alone() {
        let none = Outliers::new();
        assert!(rewrite(b"not a model", Precision::Int8, &none, HEADS, S).is_none());
        let empty = ModelProto::new().write_to_bytes().unwrap();
        assert!(rewrite(&empty, Precision::Int8, &none, HEADS, S).is_none());
        assert!(calibration(&empty, S).is_none());
    }
}
