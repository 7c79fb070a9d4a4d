//! int8 weights as uint8 on CPUs whose 8-bit multiply-add saturates.
//!
//! ONNX Runtime multiplies uint8 activations by int8 weights with `vpmaddubsw` on x86
//! CPUs without VNNI (AVX2, and AVX-512 without VNNI): it adds two u8 × s8 products into
//! a signed 16-bit lane, which saturates once they pass 32,767 (255 × 127 × 2 = 64,770).
//! Transformer activations reach those values: on a 2-core AMD EPYC with AVX2 only, the
//! default model's minimum cosine against the reference fell to 0.9944 (0.9993 with
//! VNNI, whose `vpdpbusd` adds in 32 bits). With uint8 weights ONNX Runtime takes its
//! u8 × u8 kernel, which widens both to 16 bits first and cannot saturate. The weights
//! are the same numbers: `q + 128` with a zero point of 128, so every product is exact,
//! and only where that kernel is slower does it cost anything (see the README's
//! Precision figures).

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::ModelProto;
use std::collections::{HashMap, HashSet};

/// How integer products take their int8 weights on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Int8Weights {
    /// As shipped, int8: VNNI on x86, and ARM64, whose kernels add in 32 bits.
    Signed,
    /// As uint8 with a zero point of 128: x86 without VNNI (see the module's text).
    Unsigned,
}

impl Int8Weights {
    /// The choice for the CPU this process runs on.
    pub(crate) fn for_this_cpu() -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            if std::arch::is_x86_feature_detected!("avx512vnni")
                || std::arch::is_x86_feature_detected!("avxvnni")
            {
                Self::Signed
            } else {
                Self::Unsigned
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        {
            Self::Signed
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Unsigned => "unsigned",
        }
    }
}

/// Every `DynamicQuantizeMatMul` of `model` takes its weights (input 1) and zero points
/// (input 3) as uint8: `q + 128` and 128. Initializers read by anything else are left
/// alone, with the products that read them. Returns how many products changed.
pub(super) fn make_unsigned(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let is_product = |n: &onnx_protobuf::NodeProto| {
        n.op_type == "DynamicQuantizeMatMul" && n.domain == "com.microsoft" && n.input.len() >= 4
    };
    // Where each initializer is read: (node, input position).
    let mut reads: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for (at, x) in n.input.iter().enumerate() {
            reads.entry(x.as_str()).or_default().push((i, at));
        }
    }
    // int8 initializers in raw bytes, and whether all of them are 0.
    let int8: HashMap<&str, bool> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == DataType::INT8 as i32 && !t.raw_data.is_empty())
        .map(|t| (t.name.as_str(), t.raw_data.iter().all(|&b| b == 0)))
        .collect();
    // Only products whose weights and zero points (all 0, as the int8 rewrite writes them)
    // are int8 initializers read by products in those same positions, and nothing else.
    let convertible = |name: &str, at: usize| {
        int8.get(name).is_some_and(|&zero| at == 1 || zero)
            && reads[name]
                .iter()
                .all(|&(i, pos)| pos == at && is_product(&graph.node[i]))
    };
    let products: Vec<usize> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            is_product(n) && convertible(&n.input[1], 1) && convertible(&n.input[3], 3)
        })
        .map(|(i, _)| i)
        .collect();
    let weights: HashSet<String> = products
        .iter()
        .map(|&i| graph.node[i].input[1].clone())
        .collect();
    let zeros: HashSet<String> = products
        .iter()
        .map(|&i| graph.node[i].input[3].clone())
        .collect();
    // Every reader of a converted initializer must be among `products`: a product left out
    // (say its zero points were shared with something else) keeps its weights signed.
    let ok = |name: &String, at: usize| {
        reads[name.as_str()]
            .iter()
            .all(|&(i, pos)| pos == at && products.contains(&i))
    };
    if !weights.iter().all(|w| ok(w, 1)) || !zeros.iter().all(|z| ok(z, 3)) {
        return 0;
    }
    for t in &mut graph.initializer {
        if weights.contains(&t.name) {
            // `q + 128` for q in -128..=127 is flipping the sign bit.
            t.raw_data.iter_mut().for_each(|b| *b ^= 0x80);
            t.data_type = DataType::UINT8 as i32;
        } else if zeros.contains(&t.name) {
            t.raw_data.iter_mut().for_each(|b| *b = 128);
            t.data_type = DataType::UINT8 as i32;
        }
    }
    products.len()
}
