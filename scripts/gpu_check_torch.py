#!/usr/bin/env python3
"""PyTorch baselines of the GPU check, on the shapes of lib/check/perf.ts (PERF_CASES), in the same run.

    python3 scripts/gpu_check_torch.py SPEC.json OUT.json

SPEC.json (written by lib/check/run.ts): {"device": "cuda" | "cpu", "budgetSeconds": s, "warmup": n,
"reps": n, "cases": [{"id", "kind", "compile"?, "params"}]}. OUT.json: {"torch", "cuda", "deviceName",
"results": [{"id", "kind", "ok", "medianMs", "minMs", "maxMs", "reps", "compileSeconds"?, "rate"?,
"rateUnit"?, "error"?, "skipped"?}]}, rewritten after every case, so a run cut short still leaves what it
measured. Kinds:

- trl_grpo_loss: the GRPO loss as TRL's GRPOTrainer computes it from the logits: logits / temperature,
  selective log-softmax, ratio exp(logp - old), clip to [1 - eps, 1 + eps], -min(r A, clip(r) A), k3 KL to the
  reference times beta, the token mean over the mask, then backward to the logits. Timed forward + backward,
  as our fused grpoLoss does both; with "compile": the same function through torch.compile (compile time
  reported apart, not timed).
- selective_log_softmax: TRL's log-softmax-then-gather (per-row log_softmax for bf16/f16, gather minus
  logsumexp per sequence for f32), forward only, like our tokenLogprobs.
- matmul: torch.matmul in bf16 (cuBLAS), M x K times K x N; rate in TFLOP/s.
- sdpa: scaled_dot_product_attention, causal, grouped-query heads; forward or forward + backward; TFLOP/s.
- copy: dst.copy_(src) over `bytes`; GB/s counting the read and the write (cross-check of our probe).
- transformer_op: one of our memory-bound transformer ops as Hugging Face's Llama/Qwen2 modeling code computes it
  in eager PyTorch, bf16, over T tokens: rmsNorm (to f32, mean of squares, rsqrt, back to bf16, times the
  weight) and its backward (autograd), rope (apply_rotary_pos_emb with rotate_half, cos/sin given), swiglu
  (silu(gate) * up) and its backward (autograd), add, cast (an f32 tensor .to(bfloat16)), embedding
  (F.embedding). The backward rows time torch.autograd.grad of the forward's output (the forward is not timed),
  as ours time the backward op alone.
- model_op: attentionDecode as scaled_dot_product_attention with one query per sequence against a full
  [B, Hkv, S, D] cache (Hugging Face's decode step), kvCacheWrite as index_copy_ of [B, Hkv, S, D] keys and
  values into the caches along the position axis (its StaticCache.update), embeddingBackward as index_add_ of
  the bf16 gradients (upcast) into an f32 table (the accumulation our op does).

Inputs are random (never zeros) and, where an input is large, two sets alternate so a repetition does not
find the previous one's data in cache. Timing: CUDA events around each repetition (the host clock on cpu),
median of `reps` after `warmup`. Runs on the image's own python3; needs nothing but torch.
"""
import json
import statistics
import sys
import time


def main():
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    out = {"results": []}

    def save():
        with open(out_path + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        import os
        os.replace(out_path + ".tmp", out_path)

    try:
        import torch
    except Exception as e:  # the check reports this and goes on
        out["error"] = f"PyTorch is not importable: {e!r}"
        save()
        return 0
    device = spec["device"]
    out["torch"] = torch.__version__
    out["cuda"] = torch.version.cuda
    if device == "cuda":
        if not torch.cuda.is_available():
            out["error"] = "torch.cuda.is_available() is False"
            save()
            return 0
        out["deviceName"] = torch.cuda.get_device_name(0)
        torch.backends.cuda.matmul.allow_tf32 = False
    else:
        torch.set_num_threads(max(1, torch.get_num_threads()))
    deadline = time.monotonic() + float(spec["budgetSeconds"])
    bench = Bench(torch, device, int(spec["warmup"]), int(spec["reps"]))
    for case in spec["cases"]:
        r = {"id": case["id"], "kind": case["kind"], "ok": False}
        left = deadline - time.monotonic()
        if left <= 0:
            r["skipped"] = "time budget"
        else:
            try:
                r.update(run_case(torch, bench, case, left))
                r["ok"] = "skipped" not in r
            except Exception as e:
                r["error"] = f"{type(e).__name__}: {e}"[:500]
            finally:
                if device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
        out["results"].append(r)
        save()
        print(f"  torch {r['id']}: " + (f"{r['medianMs']:.3f} ms" if r["ok"] else r.get("skipped") or r.get("error")), flush=True)
    save()
    return 0


class Bench:
    def __init__(self, torch, device, warmup, reps):
        self.torch, self.device, self.warmup, self.reps = torch, device, warmup, reps

    def time(self, fn):
        torch = self.torch
        for i in range(self.warmup):
            fn(i)
        samples = []
        if self.device == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for i in range(self.reps):
                start.record()
                fn(i)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
        else:
            for i in range(self.reps):
                t0 = time.perf_counter()
                fn(i)
                samples.append((time.perf_counter() - t0) * 1e3)
        return {"medianMs": statistics.median(samples), "minMs": min(samples), "maxMs": max(samples), "reps": self.reps}


DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def selective_log_softmax(torch, logits, index):
    """log_softmax(logits)[index] without the full log-softmax in f32 (TRL's two paths)."""
    if logits.dtype in (torch.float32, torch.float64):
        picked = torch.gather(logits, -1, index.unsqueeze(-1)).squeeze(-1)
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
        return picked - lse
    rows = []
    for row, idx in zip(logits, index):  # per-row log_softmax: logsumexp in bf16 is not accurate enough
        rows.append(torch.log_softmax(row, dim=-1).gather(-1, idx.unsqueeze(-1)).squeeze(-1))
    return torch.stack(rows)


def trl_grpo_loss(torch, logits, targets, old, ref, adv, mask, beta, eps, temperature):
    logits = logits / temperature
    logp = selective_log_softmax(torch, logits, targets)
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    coef1 = torch.exp(logp - old)
    coef2 = torch.clamp(coef1, 1 - eps, 1 + eps)
    per_token = -torch.min(coef1 * adv, coef2 * adv) + beta * kl
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def run_case(torch, bench, case, seconds_left):
    p = case["params"]
    dev = bench.device
    kind = case["kind"]
    gen = torch.Generator(device=dev).manual_seed(1)
    if kind in ("trl_grpo_loss", "selective_log_softmax"):
        B, L, V = int(p["B"]), int(p["L"]), int(p["V"])
        dtype = getattr(torch, DTYPES[p["dtype"]])
        sets = []
        for k in range(2):
            x = (torch.rand(B, L, V, device=dev, generator=gen) * 12 - 6).to(dtype)
            t = torch.randint(0, V, (B, L), device=dev, generator=gen)
            sets.append((x, t))
        if kind == "selective_log_softmax":
            with torch.no_grad():
                return bench.time(lambda i: selective_log_softmax(torch, sets[i & 1][0], sets[i & 1][1]))
        with torch.no_grad():
            logp0 = selective_log_softmax(torch, sets[0][0].float(), sets[0][1])
        old = logp0 + (torch.rand(B, L, device=dev, generator=gen) - 0.5) * 0.2
        ref = logp0 + (torch.rand(B, L, device=dev, generator=gen) - 0.5) * 0.1
        adv = torch.rand(B, L, device=dev, generator=gen) * 2 - 1
        mask = torch.ones(B, L, device=dev)
        beta, eps = float(p.get("beta", 0.0)), float(p.get("clip", 0.2))
        leaves = [x.detach().requires_grad_(True) for x, _ in sets]
        fn = lambda lg, tg: trl_grpo_loss(torch, lg, tg, old, ref, adv, mask, beta, eps, 1.0)
        extra = {}
        if case.get("compile"):
            if not hasattr(torch, "compile"):
                return {"skipped": f"torch.compile needs PyTorch 2 (this is {torch.__version__})"}
            if seconds_left < 60:
                return {"skipped": f"torch.compile needs about a minute; {seconds_left:.0f} s left"}
            fn = torch.compile(fn)
            t0 = time.monotonic()
            loss = fn(leaves[0], sets[0][1])
            loss.backward()
            if dev == "cuda":
                torch.cuda.synchronize()
            extra["compileSeconds"] = time.monotonic() - t0

        def step(i):
            lg = leaves[i & 1]
            lg.grad = None
            fn(lg, sets[i & 1][1]).backward()

        r = bench.time(step)
        r.update(extra)
        return r
    if kind == "matmul":
        M, N, K = int(p["M"]), int(p["N"]), int(p["K"])
        dtype = getattr(torch, DTYPES[p["dtype"]])
        a = [torch.randn(M, K, device=dev, generator=gen).to(dtype) for _ in range(2)]
        b = [torch.randn(K, N, device=dev, generator=gen).to(dtype) for _ in range(2)]
        r = bench.time(lambda i: torch.matmul(a[i & 1], b[i & 1]))
        r.update(rate=2.0 * M * N * K / (r["medianMs"] * 1e-3) / 1e12, rateUnit="TFLOP/s")
        return r
    if kind == "sdpa":
        B, H, Hkv, L, D = (int(p[k]) for k in ("B", "H", "Hkv", "L", "D"))
        dtype = getattr(torch, DTYPES[p["dtype"]])
        backward = bool(p.get("backward"))
        q = torch.randn(B, H, L, D, device=dev, generator=gen).to(dtype).requires_grad_(backward)
        k = torch.randn(B, Hkv, L, D, device=dev, generator=gen).to(dtype).requires_grad_(backward)
        v = torch.randn(B, Hkv, L, D, device=dev, generator=gen).to(dtype).requires_grad_(backward)
        sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
        if sdpa is None:
            return {"skipped": f"scaled_dot_product_attention needs PyTorch 2 (this is {torch.__version__})"}
        if H != Hkv:
            try:  # enable_gqa arrived in PyTorch 2.5; before it, repeat the key/value heads (same math)
                sdpa(q[:, :, :1], k[:, :, :1], v[:, :, :1], enable_gqa=True)
            except TypeError:
                plain = sdpa
                sdpa = lambda q, k, v, is_causal, enable_gqa: plain(q, k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1), is_causal=is_causal)
        grad_out = torch.randn(B, H, L, D, device=dev, generator=gen).to(dtype)

        def step(i):
            o = sdpa(q, k, v, is_causal=True, enable_gqa=(H != Hkv))
            if backward:
                q.grad = k.grad = v.grad = None
                o.backward(grad_out)

        ctx = torch.enable_grad() if backward else torch.no_grad()
        with ctx:
            r = bench.time(step)
        # Causal: half of the L x L scores; 2 matmuls forward (QK^T, PV), 2.5x that with the backward.
        flops = 4.0 * B * H * L * L * D / 2 * (3.5 if backward else 1.0)
        r.update(rate=flops / (r["medianMs"] * 1e-3) / 1e12, rateUnit="TFLOP/s")
        return r
    if kind == "copy":
        n = int(p["bytes"]) // 4
        src = torch.rand(n, device=dev, generator=gen)
        dst = torch.empty_like(src)
        r = bench.time(lambda i: dst.copy_(src))
        r.update(rate=2.0 * n * 4 / (r["medianMs"] * 1e-3) / 1e9, rateUnit="GB/s")
        return r
    if kind == "transformer_op":
        return transformer_op(torch, bench, p, gen)
    if kind == "model_op":
        return model_op(torch, bench, p, gen)
    return {"skipped": f"unknown kind {kind!r}"}


def rms_norm_hf(torch, x, weight, eps=1e-6):
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate_half(torch, x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def transformer_op(torch, bench, p, gen):
    dev = bench.device
    op = p["op"]
    T, C, F, Hq, Hkv, D, V = (int(p[k]) for k in ("T", "C", "F", "Hq", "Hkv", "D", "V"))
    bf16 = torch.bfloat16

    def rand(*shape, dtype=bf16, lo=-2.0, hi=2.0):
        return (torch.rand(*shape, device=dev, generator=gen) * (hi - lo) + lo).to(dtype)

    sets = []
    for k in range(2):
        if op in ("rmsNorm", "rmsNormBackward"):
            x, w = rand(T, C), rand(C, lo=0.5, hi=1.5)
            if op == "rmsNorm":
                sets.append(lambda x=x, w=w: rms_norm_hf(torch, x, w))
            else:
                xg, wg = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
                with torch.enable_grad():
                    y = rms_norm_hf(torch, xg, wg)
                g = rand(T, C)
                sets.append(lambda y=y, g=g, xg=xg, wg=wg: torch.autograd.grad(y, (xg, wg), g, retain_graph=True))
        elif op == "rope":
            q, kk = rand(1, Hq, T, D), rand(1, Hkv, T, D)
            inv = 1.0 / (1e6 ** (torch.arange(0, D, 2, device=dev, dtype=torch.float32) / D))
            ang = torch.arange(T, device=dev, dtype=torch.float32)[:, None] * inv[None, :]
            emb = torch.cat((ang, ang), dim=-1)
            cos, sin = emb.cos().to(bf16)[None, None], emb.sin().to(bf16)[None, None]
            sets.append(lambda q=q, kk=kk, cos=cos, sin=sin: (q * cos + rotate_half(torch, q) * sin, kk * cos + rotate_half(torch, kk) * sin))
        elif op in ("swiglu", "swigluBackward"):
            gate, up = rand(T, F, lo=-6.0, hi=6.0), rand(T, F)
            if op == "swiglu":
                sets.append(lambda gate=gate, up=up: torch.nn.functional.silu(gate) * up)
            else:
                gg, ug = gate.detach().requires_grad_(True), up.detach().requires_grad_(True)
                with torch.enable_grad():
                    y = torch.nn.functional.silu(gg) * ug
                g = rand(T, F)
                sets.append(lambda y=y, g=g, gg=gg, ug=ug: torch.autograd.grad(y, (gg, ug), g, retain_graph=True))
        elif op == "add":
            a, b = rand(T, C), rand(T, C)
            sets.append(lambda a=a, b=b: a + b)
        elif op == "cast":
            x = rand(T, C, dtype=torch.float32)
            sets.append(lambda x=x: x.to(bf16))
        elif op == "embedding":
            table = rand(V, C) if k == 0 else table  # one table (1 GiB at Qwen's vocabulary), two id sets
            ids = torch.randint(0, V, (T,), device=dev, generator=gen)
            sets.append(lambda table=table, ids=ids: torch.nn.functional.embedding(ids, table))
        else:
            return {"skipped": f"unknown transformer op {op!r}"}
    grad_mode = torch.enable_grad() if op.endswith("Backward") else torch.no_grad()
    with grad_mode:
        return bench.time(lambda i: sets[i & 1]())


def model_op(torch, bench, p, gen):
    """PyTorch's equivalents of attentionDecode, kvCacheWrite and embeddingBackward on our shapes."""
    dev = bench.device
    op = p["op"]
    bf16 = torch.bfloat16

    def rand(*shape, dtype=bf16, lo=-2.0, hi=2.0):
        return (torch.rand(*shape, device=dev, generator=gen) * (hi - lo) + lo).to(dtype)

    sets = []
    if op in ("attentionDecode", "kvCacheWrite"):
        B, Hq, Hkv, S, D = (int(p[k]) for k in ("B", "Hq", "Hkv", "S", "D"))
        sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
        if op == "attentionDecode" and sdpa is None:
            return {"skipped": f"scaled_dot_product_attention needs PyTorch 2 (this is {torch.__version__})"}
        for k in range(2):
            kc, vc = rand(B, Hkv, S, D), rand(B, Hkv, S, D)
            if op == "attentionDecode":
                q = rand(B, Hq, 1, D)
                if Hq != Hkv:
                    try:  # enable_gqa arrived in PyTorch 2.5
                        sdpa(q[:1], kc[:1, :, :1], vc[:1, :, :1], enable_gqa=True)
                        sets.append(lambda q=q, kc=kc, vc=vc: sdpa(q, kc, vc, enable_gqa=True))
                    except TypeError:
                        r = Hq // Hkv
                        sets.append(lambda q=q, kc=kc, vc=vc: sdpa(q, kc.repeat_interleave(r, 1), vc.repeat_interleave(r, 1)))
                else:
                    sets.append(lambda q=q, kc=kc, vc=vc: sdpa(q, kc, vc))
            else:
                # Hugging Face's StaticCache.update: key_states [B, Hkv, L, D] copied along the position axis.
                kk, vv = rand(B, Hkv, S, D), rand(B, Hkv, S, D)
                pos = torch.arange(S, device=dev)
                sets.append(lambda kc=kc, vc=vc, kk=kk, vv=vv, pos=pos: (kc.index_copy_(2, pos, kk), vc.index_copy_(2, pos, vv)))
    elif op == "embeddingBackward":
        T, C, V = int(p["T"]), int(p["C"]), int(p["V"])
        table = rand(V, C, dtype=torch.float32, lo=-0.01, hi=0.01)
        for k in range(2):
            g = rand(T, C)
            ids = torch.randint(0, V, (T,), device=dev, generator=gen)
            # the f32 accumulation our op does: index_add_ of the bf16 gradients, upcast, into the f32 table
            sets.append(lambda g=g, ids=ids: table.index_add_(0, ids, g.to(torch.float32)))
    else:
        return {"skipped": f"unknown model op {op!r}"}
    with torch.no_grad():
        return bench.time(lambda i: sets[i & 1]())


if __name__ == "__main__":
    sys.exit(main())
