#!/usr/bin/env python3
"""Reference side of `pelt bench`: the same PELT vectors for the same contexts and weights,
computed with HF transformers + torch the way the PELT authors' script does (every context
padded to 64 tokens, fixed batch), or with dynamic padding, on the CPU or a CUDA GPU, in f32 or
bf16 (the model cast to bf16; the sums of vectors are kept in f64 either way).

    python bench/reference.py MODEL_DIR [--mode pelt|dynamic|sorted] [--batch 32]
        [--device cpu|cuda] [--dtype f32|bf16] [--json OUT]

Needs: torch, transformers, safetensors (pip). Not used by the app or its tests.
"""
import argparse, json, resource, time

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer


def masked_inputs(tok, contexts, max_len):
    """Mention tokens -> one mask token; window of max_len tokens around it (as `pelt`)."""
    out = []
    for c in contexts:
        enc = tok(c["text"], return_offsets_mapping=True, return_special_tokens_mask=True)
        ids, mask_pos, lead, trail = [], None, 0, 0
        for i, (t, (a, b), sp) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"])):
            if sp:
                if len(ids) == lead:
                    lead += 1
                else:
                    trail += 1
                ids.append(t)
                continue
            trail = 0
            if a < c["end"] and b > c["start"]:
                if mask_pos is None:
                    mask_pos = len(ids)
                    ids.append(tok.mask_token_id)
            else:
                ids.append(t)
        if mask_pos is None:
            continue
        if len(ids) > max_len:
            body_end, room = len(ids) - trail, max_len - lead - trail
            left = max(mask_pos - (room - 1) // 2, lead)
            if left + room > body_end:
                left = body_end - room
            ids = ids[:lead] + ids[left:left + room] + ids[body_end:]
            mask_pos = lead + (mask_pos - left)
        out.append((c["entity"], ids, mask_pos))
    return out


def transform(model, hidden):
    if hasattr(model, "cls"):
        return model.cls.predictions.transform(hidden)
    if hasattr(model, "lm_head"):
        h = torch.nn.functional.gelu(model.lm_head.dense(hidden))
        return model.lm_head.layer_norm(h)
    return model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, dtype, n=1536):
    """`[n,n] x [n,n]` in `dtype` on `device`, best of 5, GFLOP/s (synchronised on CUDA)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--contexts", default="bench/nyt-contexts.jsonl")
    ap.add_argument("--mode", choices=["pelt", "dynamic", "sorted"], default="pelt")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    t_start = time.perf_counter()
    torch.set_grad_enabled(False)
    contexts = [json.loads(l) for l in open(args.contexts) if l.strip()]
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForMaskedLM.from_pretrained(args.model).eval().to(device=device, dtype=dtype)
    base = getattr(model, model.base_model_prefix)
    sync(device)
    load_secs = time.perf_counter() - t_start
    cfg = model.config
    H = getattr(cfg, "hidden_size", None) or cfg.dim
    I = getattr(cfg, "intermediate_size", None) or cfg.hidden_dim
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layers
    t0 = time.perf_counter()
    items = masked_inputs(tok, contexts, args.max_len)
    if args.mode == "sorted":
        win = args.batch * 16
        items = [x for i in range(0, len(items), win) for x in sorted(items[i:i + win], key=lambda t: len(t[1]))]
    sums, flops, tokens, padded = {}, 0.0, 0, 0
    for i in range(0, len(items), args.batch):
        chunk = items[i:i + args.batch]
        L = args.max_len if args.mode == "pelt" else max(len(x[1]) for x in chunk)
        ids = torch.full((len(chunk), L), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(chunk), L), dtype=torch.long)
        for r, (_, x, _) in enumerate(chunk):
            ids[r, :len(x)] = torch.tensor(x)
            att[r, :len(x)] = 1
        hidden = base(input_ids=ids.to(device), attention_mask=att.to(device)).last_hidden_state
        rows = torch.arange(len(chunk), device=device)
        pos = torch.tensor([m for _, _, m in chunk], device=device)
        out = transform(model, hidden[rows, pos]).double().cpu()
        for (e, _, _), v in zip(chunk, out):
            sums[e] = sums.get(e, 0) + v
        B = len(chunk)
        flops += layers * (2 * B * L * (4 * H * H + 2 * H * I) + 4 * B * L * L * H)
        tokens += sum(len(x[1]) for x in chunk)
        padded += B * L
    sync(device)
    encode_secs = time.perf_counter() - t0
    vectors = {e: (s / s.norm() * 7).float().tolist() for e, s in sums.items()}
    res = {
        "mode": args.mode, "device": args.device, "dtype": args.dtype, "contexts": len(items), "batch": args.batch, "threads": torch.get_num_threads(),
        "load_secs": load_secs, "encode_secs": encode_secs,
        "contexts_per_sec": len(items) / encode_secs,
        "contexts_per_sec_total": len(items) / (encode_secs + load_secs),
        "tokens": tokens, "padded_tokens": padded, "tokens_per_sec": tokens / encode_secs,
        "gflops": flops / encode_secs / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None,
        "matmul_peak_gflops": matmul_peak(device, dtype),
        "torch": torch.__version__,
    }
    print(json.dumps({k: v for k, v in res.items()}, indent=None))
    if args.json:
        res["vectors"] = vectors
        json.dump(res, open(args.json, "w"))


if __name__ == "__main__":
    main()
