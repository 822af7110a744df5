#!/usr/bin/env python3
"""The measurements of models/examples/bench_generate.rs, in PyTorch + Hugging Face PEFT.

Same model file (transformers dequantizes the GGUF to f32 and undoes llama.cpp's q/k row
permutation), same prompts, same shapes, same thread count:

- greedy generation: prefill the prompt, then decode 64 tokens with the KV cache
  (tokens/s of the prefill and of the 63 decode steps after the first token);
- decode with a rank-8 LoRA adapter on q_proj and v_proj, unmerged and merged (32 tokens);
- LoRA training: forward + backward + AdamW step on one sequence of 128 positions (129 tokens:
  position i predicts token i+1), batch 1, rank 8 (alpha 16) on q_proj and v_proj, with A and B
  trainable (standard LoRA) and with only B trainable (FFA-LoRA), mean over the steps after the
  first (warm-up) one.

Prints the figures and, with --json, writes them to a file. Asserts nothing about time; it does
check that the model says the same as the Burn side (the greedy text, the step-0 loss).

    python3 -m venv /work/venv-bench
    /work/venv-bench/bin/pip install torch transformers peft gguf
    /work/venv-bench/bin/python bench/pytorch_peft.py [--model assets/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPT = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is"
TRAIN_TEXT = (
    "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not to praise him. " * 8
)


def default_model() -> Path:
    assets = os.environ.get("HEARTH_ASSETS", str(Path(__file__).resolve().parent.parent / "assets"))
    return Path(assets) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load(path: Path):
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    model.eval()
    return tokenizer, model


@torch.inference_mode()
def greedy(model, prompt_ids: list[int], new_tokens: int):
    """Returns (tokens, prefill seconds, decode seconds): the first token ends the prefill."""
    ids = torch.tensor([prompt_ids])
    t = time.perf_counter()
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    token = int(out.logits[0, -1].argmax())
    prefill = time.perf_counter() - t
    tokens = [token]
    t = time.perf_counter()
    for _ in range(new_tokens - 1):
        out = model(input_ids=torch.tensor([[token]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = int(out.logits[0, -1].argmax())
        tokens.append(token)
    decode = time.perf_counter() - t
    return tokens, prefill, decode


def lora_config() -> LoraConfig:
    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])


def train(model, ids: list[int], b_only: bool, steps: int, lr: float):
    """Mean seconds per step (after the first), trainable values, losses."""
    peft_model = get_peft_model(model, lora_config())
    if b_only:
        for name, p in peft_model.named_parameters():
            if "lora_A" in name:
                p.requires_grad_(False)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    batch = torch.tensor([ids])
    inputs, targets = batch[:, :-1], batch[:, 1:]
    peft_model.train()
    times, losses = [], []
    for _ in range(steps):
        t = time.perf_counter()
        logits = peft_model(input_ids=inputs, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        times.append(time.perf_counter() - t)
        losses.append(round(loss.item(), 6))
    peft_model.unload()  # removes the LoRA layers, leaving the base model as it was
    mean = sum(times[1:]) / (len(times) - 1)
    return mean, trainable, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=default_model())
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4, help="training steps; the first is warm-up")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    print(f"model {args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    t = time.perf_counter()
    tokenizer, model = load(args.model)
    results["load_s"] = time.perf_counter() - t
    print(f"load: {results['load_s']:.2f} s")

    prompt = tokenizer.encode(PROMPT, add_special_tokens=False)
    for run in range(2):
        tokens, prefill, decode = greedy(model, prompt, args.new_tokens)
        n = len(tokens) - 1
        print(
            f"run {run}: prefill {len(prompt)} tokens in {prefill:.3f} s "
            f"({len(prompt) / prefill:.1f} tok/s); decode {n} tokens in {decode:.2f} s "
            f"({n / decode:.1f} tok/s)"
        )
        if run == 0:
            results["greedy_text"] = tokenizer.decode(tokens)
            print(f"  text: {results['greedy_text']!r}")
        results[f"prefill_tok_s_run{run}"] = len(prompt) / prefill
        results[f"decode_tok_s_run{run}"] = n / decode
    results["prompt_tokens"] = len(prompt)

    adapted = get_peft_model(model, lora_config())
    # B starts at zero on both sides; the unmerged path still runs both low-rank matmuls.
    adapted.eval()
    for merged in (False, True):
        if merged:
            adapted = adapted.merge_and_unload()
        _, _, decode = greedy(adapted, prompt, 33)
        label = "merged" if merged else "unmerged"
        results[f"decode_lora_{label}_tok_s"] = 32 / decode
        print(f"decode with a rank-8 q,v adapter ({label}): {32 / decode:.1f} tok/s")
    del adapted, model

    ids = tokenizer.encode(TRAIN_TEXT, add_special_tokens=False)[:129]
    seq = len(ids) - 1
    results["train_seq"] = seq
    for b_only in (True, False):
        _, base = load(args.model)
        mean, trainable, losses = train(base, ids, b_only, args.steps, 1e-3)
        label = "FFA-LoRA, B only" if b_only else "LoRA, A and B"
        key = "train_b_only" if b_only else "train_ab"
        results[key] = {
            "s_per_step": mean,
            "tok_s": seq / mean,
            "trainable": trainable,
            "losses": losses,
        }
        print(
            f"train ({label}; {trainable} trainable values): {mean:.2f} s/step, "
            f"{seq / mean:.1f} tokens/s; loss {losses}"
        )
        del base

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
