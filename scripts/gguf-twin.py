"""Writes the GGUF twin of a BERT-style ONNX embedding model: the same weights (the ONNX
file's initializers, int8 ones dequantized as the graph does), the same WordPiece
vocabulary, for llama.cpp's `bert` architecture with mean pooling. The llama.cpp
embedding engine's vectors are compared with the ONNX engine's on this twin
(__tests__/embedding-gguf.test.js), so that both engines are tested on one model.

    python3 scripts/gguf-twin.py <model dir> <out.gguf> [f32|f16|bf16|q8_0] [--rank]
    python3 scripts/gguf-twin.py <model dir> <out dir> --onnx-rank

With --rank it writes a reranker instead: the same encoder with a classification head
(llama.cpp's `cls` dense + tanh and `cls.output` projection, rank pooling on [CLS]) whose
weights are drawn from a fixed seed. No cross-encoder is in a registry package; this
fixture tests the reranker's plumbing (input layout, batching, scores against llama.cpp's
own server), not ranking quality: its scores mean nothing.

With --onnx-rank it writes that same reranker as an ONNX cross-encoder instead (the ONNX
graph with the same head appended, output `logits`, in a Hugging Face style folder for
transformers.js's AutoModelForSequenceClassification): `npm run bench` ranks with both.

The model directory holds model.onnx, tokenizer.json and config.json (the default
model's layout). Needs PyPI's `onnx`, `gguf` and `numpy` (scripts/gguf-twin.js installs
them into the package's cache and runs this).
"""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper
import gguf

rank = "--rank" in sys.argv
onnx_rank = "--onnx-rank" in sys.argv
args = [a for a in sys.argv[1:] if a not in ("--rank", "--onnx-rank")]
model_dir, out_path = args[0], args[1]
wtype = args[2] if len(args) > 2 else "f32"
if wtype not in ("f32", "f16", "bf16", "q8_0"):
    sys.exit(f"unknown weight type {wtype}: f32, f16, bf16 or q8_0")

graph = onnx.load(f"{model_dir}/model.onnx").graph
config = json.load(open(f"{model_dir}/config.json"))
tokenizer = json.load(open(f"{model_dir}/tokenizer.json"))

inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
consumers = {}
for node in graph.node:
    for name in node.input:
        consumers.setdefault(name, []).append(node)
producer = {o: n for n in graph.node for o in n.output}


def value(name):
    """An initializer, or the product of a dequantization (Cast then Mul by a scale)."""
    if name in inits:
        return inits[name].astype(np.float32)
    node = producer.get(name)
    if node is not None and node.op_type == "Mul":
        a, b = (value(i) for i in node.input)
        return a * b
    if node is not None and node.op_type == "Cast":
        return value(node.input[0])
    raise SystemExit(f"{name} is neither an initializer nor a dequantized one")


# HF names, with whatever prefix the exporter gave them ("inner." here).
hf = {}
for name in inits:
    if name.endswith((".weight", ".bias")) and "embeddings.position_ids" not in name:
        hf[name] = inits[name].astype(np.float32)
for name in list(inits):
    # Dequantized embedding tables: weight_q * weight_scale -> "...weight".
    if name.endswith(".weight_q"):
        base = name[: -len("_q")]
        hf[base] = value(consumers[consumers[name][0].output[0]][0].output[0])
# Each linear layer's weight is the MatMul input next to its bias: MatMul(x, W) + b,
# W of shape [in, out]; GGUF wants PyTorch's [out, in].
for node in graph.node:
    if node.op_type != "Add":
        continue
    bias = next((i for i in node.input if i in inits and i.endswith(".bias")), None)
    other = next((i for i in node.input if i != bias), None)
    mm = producer.get(other)
    if bias is None or mm is None or mm.op_type != "MatMul":
        continue
    hf[bias[: -len(".bias")] + ".weight"] = value(mm.input[1]).T.copy()

prefix = ""
for name in hf:
    if name.endswith("embeddings.word_embeddings.weight"):
        prefix = name[: -len("embeddings.word_embeddings.weight")]
n_layer = config["num_hidden_layers"]
names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)



def head(n):
    """The classification head's weights, drawn in one order from one seed (both forms)."""
    rng = np.random.default_rng(20261203)
    return {
        "cls.weight": rng.normal(0, n**-0.5, (n, n)).astype(np.float32),
        "cls.bias": np.zeros(n, np.float32),
        "cls.output.weight": rng.normal(0, n**-0.5, (1, n)).astype(np.float32),
        "cls.output.bias": np.zeros(1, np.float32),
    }


if onnx_rank:
    import os
    import shutil
    from onnx import helper, TensorProto

    model = onnx.load(f"{model_dir}/model.onnx")
    g = model.graph
    w = head(config["hidden_size"])
    for name, data in (
        ("rank_cls_w", w["cls.weight"].T.copy()),
        ("rank_cls_b", w["cls.bias"]),
        ("rank_out_w", w["cls.output.weight"].T.copy()),
        ("rank_out_b", w["cls.output.bias"]),
        ("rank_first", np.array(0, dtype=np.int64)),
    ):
        g.initializer.append(numpy_helper.from_array(data, name))
    # [CLS]'s hidden state -> dense + tanh -> one logit (BertForSequenceClassification).
    g.node.extend([
        helper.make_node("Gather", ["last_hidden_state", "rank_first"], ["rank_cls"], axis=1),
        helper.make_node("MatMul", ["rank_cls", "rank_cls_w"], ["rank_h0"]),
        helper.make_node("Add", ["rank_h0", "rank_cls_b"], ["rank_h1"]),
        helper.make_node("Tanh", ["rank_h1"], ["rank_h2"]),
        helper.make_node("MatMul", ["rank_h2", "rank_out_w"], ["rank_l0"]),
        helper.make_node("Add", ["rank_l0", "rank_out_b"], ["logits"]),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1]))
    # transformers.js 2.17's onnxruntime-node 1.14 reads IR versions up to 8.
    model.ir_version = min(model.ir_version, 8)
    os.makedirs(f"{out_path}/onnx", exist_ok=True)
    onnx.save(model, f"{out_path}/onnx/model_quantized.onnx")
    conf = dict(config)
    conf.update({"architectures": ["BertForSequenceClassification"], "num_labels": 1,
                 "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}})
    json.dump(conf, open(f"{out_path}/config.json", "w"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(f"{model_dir}/{name}", f"{out_path}/{name}")
    sys.exit(0)

writer = gguf.GGUFWriter(out_path, "bert")
writer.add_name(f"{config.get('_name_or_path', 'bert')} (GGUF twin of {model_dir}/model.onnx)")
writer.add_context_length(config["max_position_embeddings"])
writer.add_embedding_length(config["hidden_size"])
writer.add_feed_forward_length(config["intermediate_size"])
writer.add_block_count(n_layer)
writer.add_head_count(config["num_attention_heads"])
writer.add_layer_norm_eps(config["layer_norm_eps"])
writer.add_causal_attention(False)
writer.add_pooling_type(gguf.PoolingType.RANK if rank else gguf.PoolingType.MEAN)
writer.add_file_type(
    {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[wtype]
)

# WordPiece: llama.cpp's WPM tokenizer marks a word's start with U+2581 and a
# continuation by its absence (HF marks continuations with "##").
vocab = tokenizer["model"]["vocab"]
special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
tokens = [None] * len(vocab)
for tok, i in vocab.items():
    tokens[i] = tok
texts, types = [], []
for tok in tokens:
    if tok in special:
        texts.append(tok)
        types.append(gguf.TokenType.CONTROL)
    elif tok.startswith("##"):
        texts.append(tok[2:])
        types.append(gguf.TokenType.NORMAL)
    else:
        texts.append("\u2581" + tok)
        types.append(gguf.TokenType.NORMAL)
writer.add_tokenizer_model("bert")
writer.add_token_list(texts)
writer.add_token_types(types)
writer.add_token_type_count(config.get("type_vocab_size", 2))
# llama.cpp's WPM tokenizer starts a text with its BOS token ([CLS]) and ends it with SEP.
for add, tok in (
    (writer.add_bos_token_id, "[CLS]"),
    (writer.add_sep_token_id, "[SEP]"),
    (writer.add_unk_token_id, "[UNK]"),
    (writer.add_pad_token_id, "[PAD]"),
    (writer.add_mask_token_id, "[MASK]"),
):
    if tok in vocab:
        add(vocab[tok])
lower = tokenizer.get("normalizer", {}) or {}
writer.add_bool("tokenizer.ggml.normalizer.lowercase", bool(lower.get("lowercase", True)))

written = 0
for name, data in sorted(hf.items()):
    short = name[len(prefix):]
    base, _, suffix = short.rpartition(".")
    mapped = names.get_name(base)
    if mapped is None:
        continue
    data = np.ascontiguousarray(data, dtype=np.float32)
    # Norms, biases and the small token-type table stay f32 (as llama.cpp's converter
    # does); the matrices take the requested type.
    if data.ndim == 2 and wtype != "f32" and "token_types" not in mapped:
        if wtype == "f16":
            data = data.astype(np.float16)
            writer.add_tensor(f"{mapped}.{suffix}", data)
        else:
            # bf16 (rounded to nearest even, as llama.cpp's converter does) or q8_0.
            qtype = gguf.GGMLQuantizationType.BF16 if wtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
            q = gguf.quants.quantize(data, qtype)
            writer.add_tensor(f"{mapped}.{suffix}", q, raw_shape=q.shape, raw_dtype=qtype)
    else:
        writer.add_tensor(f"{mapped}.{suffix}", data)
    written += 1

if rank:
    for name, data in head(config["hidden_size"]).items():
        writer.add_tensor(name, data)
        written += 1

expected = 5 + 16 * n_layer + (4 if rank else 0)
if written != expected:
    raise SystemExit(f"wrote {written} tensors, expected {expected}: the ONNX graph is not the BERT layout this reads")
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()

