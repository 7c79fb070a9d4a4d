"""Computes the reference vectors in __tests__/fixtures/reference-embeddings.json.

Independent of orion-native: Python onnxruntime runs the same ONNX file, the Python
`tokenizers` package tokenizes (truncating at 256 tokens like sentence-transformers),
and numpy does the mean pooling and L2 normalisation.

    pip install onnxruntime tokenizers numpy
    python3 scripts/make-reference.py ~/.cache/orion-native/models/all-MiniLM-L6-v2
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SENTENCES = [
    "The cat sits on the mat.",
    "A kitten is resting on a rug.",
    "Stock markets fell sharply after the interest rate decision.",
    "Paris is the capital of France.",
    "What is the capital city of France?",
    "Photosynthesis converts light energy into chemical energy.",
    "",
    "Ünïcödé and emoji 🚀 survive tokenization.",
    # Longer than 256 tokens: checks that truncation matches.
    " ".join(f"sentence {i} about the weather in spring." for i in range(60)),
]

model_dir = sys.argv[1]
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.enable_truncation(256)
tok.no_padding()
sess = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
out = []
for s in SENTENCES:
    enc = tok.encode(s)
    ids = np.array([enc.ids], dtype=np.int64)
    mask = np.array([enc.attention_mask], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = sess.run(["last_hidden_state"], feeds)[0][0]
    m = mask[0][:, None].astype(np.float32)
    pooled = (hidden * m).sum(0) / m.sum()
    vec = pooled / np.linalg.norm(pooled)
    out.append({"text": s, "tokens": len(enc.ids), "vector": [round(float(x), 7) for x in vec]})
json.dump({"model": "all-MiniLM-L6-v2 (int8 ONNX)", "generator": "scripts/make-reference.py", "items": out}, sys.stdout)
