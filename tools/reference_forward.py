#!/usr/bin/env python3
"""Independent numpy reference for the Llama forward pass of a GGUF model (see tools/README.md).

Its own GGUF parser (struct + numpy), its own dequantization (F32, F16, Q8_0, Q4_1), and a plain
Llama forward pass: RMSNorm, grouped-query attention with *interleaved* RoPE (pairs 2i, 2i+1, as
the q/k rows in GGUF files are laid out), SwiGLU feed-forward, output head tied to the token
embedding when the file has no `output.weight`. Nothing here is shared with the Rust code.

    python3 tools/reference_forward.py --text "The capital of France is" --greedy 8
    python3 tools/reference_forward.py --ids 504,3575,282,4649,314 --greedy 8
    python3 tools/reference_forward.py --greedy 8 --text "The capital of France is" \
        --text "..." --save models/tests/data/reference_logits.json   (see tools/README.md)

--text uses a small BPE encoder of its own that handles ASCII text only (enough for test prompts).
"""

import argparse
import hashlib
import json
import os
import re
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------------------------
# GGUF parsing

VALUE_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}
GGML_F32, GGML_F16, GGML_Q4_1, GGML_Q8_0 = 0, 1, 3, 8
BLOCKS = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_Q4_1: (32, 20), GGML_Q8_0: (32, 34)}


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def unpack(self, fmt):
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.unpack("<Q")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8")
        self.pos += n
        return s

    def value(self, ty):
        if ty == 8:
            return self.string()
        if ty == 9:
            elem, n = self.unpack("<I"), self.unpack("<Q")
            return [self.value(elem) for _ in range(n)]
        return self.unpack(VALUE_FORMATS[ty])


def read_gguf(path):
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    r = Reader(buf)
    assert bytes(buf[:4]) == b"GGUF", "not a gguf file"
    r.pos = 4
    version = r.unpack("<I")
    assert version in (2, 3), f"gguf version {version}"
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        dims = [r.unpack("<Q") for _ in range(n_dims)]
        infos.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
    align = meta.get("general.alignment", 32)
    data_start = (r.pos + align - 1) // align * align
    tensors = {}
    for name, dims, ty, offset in infos:
        n = int(np.prod(dims))
        per_block, block_bytes = BLOCKS[ty]
        start = data_start + offset
        raw = np.frombuffer(buf, dtype=np.uint8, count=n // per_block * block_bytes, offset=start)
        tensors[name] = (dims, ty, raw)
    return meta, tensors


def dequantize(dims, ty, raw):
    """The tensor as float32, shape outermost first (GGUF dims are innermost first)."""
    if ty == GGML_F32:
        x = raw.view("<f4")
    elif ty == GGML_F16:
        x = raw.view("<f2").astype(np.float32)
    elif ty == GGML_Q8_0:
        b = raw.reshape(-1, 34)
        d = b[:, :2].copy().view("<f2").astype(np.float32)
        qs = b[:, 2:].view(np.int8).astype(np.float32)
        x = d * qs
    elif ty == GGML_Q4_1:
        b = raw.reshape(-1, 20)
        d = b[:, 0:2].copy().view("<f2").astype(np.float32)
        m = b[:, 2:4].copy().view("<f2").astype(np.float32)
        qs = b[:, 4:]
        lo = (qs & 0x0F).astype(np.float32)
        hi = (qs >> 4).astype(np.float32)
        x = np.concatenate([d * lo + m, d * hi + m], axis=1)
    else:
        raise SystemExit(f"unsupported ggml type {ty}")
    return x.reshape(list(reversed(dims)))


# ---------------------------------------------------------------------------------------------
# Model

class Llama:
    def __init__(self, path, dtype):
        meta, tensors = read_gguf(path)
        self.meta = meta
        a = meta["general.architecture"]
        self.n_layers = meta[f"{a}.block_count"]
        self.hidden = meta[f"{a}.embedding_length"]
        self.n_heads = meta[f"{a}.attention.head_count"]
        self.n_kv = meta.get(f"{a}.attention.head_count_kv", self.n_heads)
        self.head_dim = self.hidden // self.n_heads
        self.theta = meta.get(f"{a}.rope.freq_base", 10000.0)
        self.eps = meta[f"{a}.attention.layer_norm_rms_epsilon"]
        self.tokens = meta["tokenizer.ggml.tokens"]
        w = lambda name: dequantize(*tensors[name]).astype(dtype)
        self.embd = w("token_embd.weight")
        self.norm = w("output_norm.weight")
        self.head = w("output.weight") if "output.weight" in tensors else self.embd
        self.layers = []
        for i in range(self.n_layers):
            p = f"blk.{i}."
            self.layers.append({k: w(p + k + ".weight") for k in (
                "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")})
        self.dtype = dtype
        self.raw = tensors

    def rms_norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x):
        """Interleaved RoPE on [seq, heads, head_dim]: pairs (2i, 2i+1) rotated by pos·θ^(-2i/d)."""
        seq, _, d = x.shape
        inv = self.theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        ang = np.arange(seq, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :].astype(self.dtype), np.sin(ang)[:, None, :].astype(self.dtype)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(self, ids):
        """Logits [seq, vocab] for the token ids (positions 0..seq-1, causal)."""
        x = self.embd[np.asarray(ids)]
        seq, hd = len(ids), self.head_dim
        group = self.n_heads // self.n_kv
        mask = np.triu(np.full((seq, seq), -np.inf, dtype=self.dtype), k=1)
        for L in self.layers:
            h = self.rms_norm(x, L["attn_norm"])
            q = self.rope((h @ L["attn_q"].T).reshape(seq, self.n_heads, hd))
            k = self.rope((h @ L["attn_k"].T).reshape(seq, self.n_kv, hd))
            v = (h @ L["attn_v"].T).reshape(seq, self.n_kv, hd)
            k = np.repeat(k, group, axis=1)
            v = np.repeat(v, group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
            scores -= scores.max(axis=-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(axis=-1, keepdims=True)
            attn = np.einsum("hqk,khd->qhd", p, v).reshape(seq, self.hidden)
            x = x + attn @ L["attn_output"].T
            h = self.rms_norm(x, L["ffn_norm"])
            g = h @ L["ffn_gate"].T
            ff = (g / (1.0 + np.exp(-g))) * (h @ L["ffn_up"].T)
            x = x + ff @ L["ffn_down"].T
        return self.rms_norm(x, self.norm) @ self.head.T

    def greedy(self, ids, n):
        ids = list(ids)
        for _ in range(n):
            ids.append(int(np.argmax(self.forward(ids)[-1])))
        return ids[-n:] if n else []


# ---------------------------------------------------------------------------------------------
# Byte-level BPE (ASCII encoder, full decoder)

def byte_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = list(bs), 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# GPT-2's pre-tokenizer regex restricted to ASCII, digits split one by one (SmolLM2's Digits step).
ASCII_PRETOKEN = re.compile(r"[0-9]|'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def encode_ascii(text, tokens, merges):
    if not text.isascii():
        raise SystemExit("--text handles ASCII only; pass --ids for other text")
    vocab = {t: i for i, t in enumerate(tokens)}
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
    bc = byte_chars()
    ids = []
    for piece in ASCII_PRETOKEN.findall(text):
        word = [bc[b] for b in piece.encode()]
        while len(word) > 1:
            pairs = [(ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 60:
                break
            word = word[:i] + [word[i] + word[i + 1]] + word[i + 2:]
        ids.extend(vocab[w] for w in word)
    return ids


def decode(ids, tokens):
    inv = {c: b for b, c in byte_chars().items()}
    out = bytearray()
    for i in ids:
        t = tokens[i]
        if t.startswith("<|") and t.endswith("|>"):
            out.extend(t.encode())
        else:
            out.extend(inv[c] for c in t)
    return out.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------

def default_model():
    assets = os.environ.get("HEARTH_ASSETS") or os.path.join(os.path.dirname(__file__), "..", "assets")
    return os.path.join(assets, "SmolLM2-135M-Instruct.Q4_1.gguf")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_case(model, ids, greedy):
    """Prints and returns the reference record of one prompt."""
    print("prompt ids:", ids)
    print("prompt text:", repr(decode(ids, model.tokens)))
    logits = model.forward(ids)[-1].astype(np.float64)
    best = int(np.argmax(logits))
    print("first 16 logits:", [round(float(v), 5) for v in logits[:16]])
    print("argmax:", best, repr(model.tokens[best]))
    cont = model.greedy(ids, greedy)
    if greedy:
        print("greedy ids:", cont)
        print("greedy text:", repr(decode(cont, model.tokens)))
    top = np.argsort(-logits, kind="stable")[:50]
    fixed = [i * 983 for i in range(50)]
    return {
        "prompt_text": decode(ids, model.tokens),
        "prompt_ids": ids,
        "argmax": best,
        "top50": [[int(i), round(float(logits[i]), 5)] for i in top],
        "fixed_ids": fixed,
        "fixed_logits": [round(float(logits[i]), 5) for i in fixed],
        "greedy_ids": cont,
        "greedy_text": decode(cont, model.tokens),
    }


CHECKED_TENSORS = ["token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight",
                   "blk.0.attn_k.weight", "blk.29.ffn_down.weight"]


def tensor_checks(model):
    """Shape, sum of absolute values and the first 8 values of a few dequantized tensors."""
    out = {}
    for name in CHECKED_TENSORS:
        x = dequantize(*model.raw[name]).astype(np.float64)
        out[name] = {"dims": list(x.shape), "abs_sum": round(float(np.abs(x).sum()), 3),
                     "first8": [round(float(v), 6) for v in x.reshape(-1)[:8]]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=default_model())
    ap.add_argument("--ids", action="append", default=[], help="comma-separated token ids (repeatable)")
    ap.add_argument("--text", action="append", default=[],
                    help="ASCII prompt, encoded by this script's own BPE (repeatable)")
    ap.add_argument("--greedy", type=int, default=0, help="greedy continuation length")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--save", help="write each prompt's ids, top-50 and fixed-id logits as JSON here")
    args = ap.parse_args()
    if not args.ids and not args.text:
        ap.error("give at least one --text or --ids")

    model = Llama(args.model, np.dtype(args.dtype))
    merges = model.meta["tokenizer.ggml.merges"]
    prompts = [encode_ascii(t, model.tokens, merges) for t in args.text]
    prompts += [[int(i) for i in ids.split(",")] for ids in args.ids]
    cases = []
    for ids in prompts:
        cases.append(run_case(model, ids, args.greedy))
        print()

    if args.save:
        out = {
            "about": "tools/reference_forward.py: last-position logits of each prompt (numpy, "
                     f"{args.dtype}); compare the Rust model to 1e-3",
            "model": os.path.basename(args.model),
            "model_sha256": sha256(args.model),
            "tensors": tensor_checks(model),
            "cases": cases,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        with open(args.save, "w") as f:
            # One key per line, lists on one line: small and diffable.
            f.write("{\n")
            f.write(",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in out.items()
                               if k != "cases"))
            f.write(',\n "cases": [\n')
            f.write(",\n".join("  {\n" + ",\n".join(f"   {json.dumps(k)}: {json.dumps(v)}"
                                                     for k, v in c.items()) + "\n  }"
                               for c in cases))
            f.write("\n ]\n}\n")
        print("saved", args.save)


if __name__ == "__main__":
    sys.exit(main())
