"""A cross-encoder's scores as transformers computes them, for the ONNX reranker's test
(__tests__/rerank.test.js): the pair encoded by Hugging Face's `tokenizers` (query, then
document with token type 1, cut to 512 tokens) and run by ONNX Runtime's Python package,
independently of the addon (its own tokenizer setup, fastembed and ONNX Runtime library).

    python3 scripts/rerank-reference.py <model dir>  < {"query": ..., "documents": [...]}

Prints the documents' scores (the `logits` output), in order, as JSON.
"""
import json
import os
import sys

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

model_dir = sys.argv[1]
request = json.load(sys.stdin)
tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tokenizer.enable_truncation(512)
tokenizer.no_padding()
onnx = next(
    os.path.join(model_dir, f)
    for f in ("model.onnx", "onnx/model.onnx", "onnx/model_quantized.onnx")
    if os.path.isfile(os.path.join(model_dir, f))
)
session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}
scores = []
for document in request["documents"]:
    e = tokenizer.encode(request["query"], document)
    feed = {
        "input_ids": np.array([e.ids], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask], dtype=np.int64),
    }
    if "token_type_ids" in names:
        feed["token_type_ids"] = np.array([e.type_ids], dtype=np.int64)
    scores.append(float(session.run(["logits"], feed)[0][0][0]))
print(json.dumps(scores))
