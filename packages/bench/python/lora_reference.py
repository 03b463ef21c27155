#!/usr/bin/env python3
"""The PyTorch reference of `pnpm bench`: the same shapes, recipe and steps as packages/bench/src
(Shapes.ts), on the CPU (or `--device cuda`), timed the same way (median ms/step after warm-up).

With `transformers` and `peft` importable it trains LlamaForCausalLM + get_peft_model (PyTorch +
PEFT, what users compare with); otherwise a plain-PyTorch Llama (RMSNorm, RoPE in HF's "half"
layout, grouped-query attention, SwiGLU, tied or untied head) with a minimal LoRA on q_proj and
v_proj. Either way: frozen base, LoRA r=8 alpha=16 dropout 0, torch.optim.AdamW(lr=1e-4,
weight_decay=0) on the LoRA parameters only, no clipping. One step = forward, next-token
cross-entropy, backward, optimizer.step(), zero_grad().

COLA is timed with the same knot layout as the TypeScript bench: at a knot every LoRA pair is
copied to the host (the chain's history), merged (W += scale * B @ A), re-initialised (A
kaiming-uniform, B zero) and the optimizer is replaced by a fresh one.

Usage: lora_reference.py --shape stories260K:3:15 --shape wide:2:9 [--threads N] [--implementation auto|peft|plain] [--variants dora,vera]
                         [--device cpu|cuda|cuda:N]
Progress goes to stderr; the result is one JSON line on stdout.

On a CUDA device (scripts/gpu-check.sh uses it) the model, batch and optimizer live on the GPU, in float32
(TF32 left off, PyTorch's default for matmuls), every timed interval ends with a synchronize, a knot's
history copies go to the host, and peak memory is torch.cuda's peak allocated bytes above those allocated
before the model was built (not resident memory).
"""
import argparse
import ctypes
import gc
import json
import math
import os
import platform
import re
import resource
import sys
import threading
import time

SHAPES = {
    "stories260K": dict(vocab=512, hidden=64, intermediate=172, layers=5, heads=8, kv_heads=4, tied=True, batch=8, seq=256),
    "wide": dict(vocab=8192, hidden=768, intermediate=2048, layers=4, heads=12, kv_heads=12, tied=False, batch=4, seq=128),
    "smollm135M": dict(vocab=49152, hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, tied=True, batch=1, seq=256),
}
RANK = 8
ALPHA = 16
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.0
SEED = 0
ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-5
MAX_POSITIONS = 512
TARGET_MODULES = ["q_proj", "v_proj"]
DEVICE = "cpu"  # --device


def on_cuda():
    return DEVICE.startswith("cuda")


def sync():
    """Waits for the device's queued work (CUDA kernels run asynchronously); nothing on the CPU."""
    if on_cuda():
        torch.cuda.synchronize()


def log(text):
    print(f"[pytorch] {text}", file=sys.stderr, flush=True)


def unavailable(reason):
    print(json.dumps({"status": "unavailable", "reason": reason}), flush=True)
    sys.exit(0)


try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as error:  # noqa: BLE001 - any import failure means "no reference here"
    unavailable(f"cannot import torch with {sys.executable} ({type(error).__name__}: {error}); on Debian: apt-get install python3-torch libopenblas0-pthread")


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 == 1 else (ordered[mid - 1] + ordered[mid]) / 2


def token_ids(shape):
    """The same fixed batch as Shapes.ts's tokenId."""
    rows = [[(row * 977 + col * 131 + (col * col) % 61) % shape["vocab"] for col in range(shape["seq"])] for row in range(shape["batch"])]
    return torch.tensor(rows, dtype=torch.long)


def knot_offsets(steps):
    """Shapes.ts's knotOffsets: every steps/3 steps, at most two, inside the window."""
    gap = max(1, steps // 3)
    return [offset for offset in (gap, 2 * gap) if offset < steps]


# --- plain PyTorch Llama + LoRA --------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LoraLinear(nn.Module):
    """PEFT's LoRA forward: base(x) + lora_B(lora_A(x)) * alpha / r, A kaiming-uniform, B zero."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        self.scaling = alpha / r
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        return self.base_layer(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


HAS_SDPA = hasattr(F, "scaled_dot_product_attention")  # torch >= 2.0


class Attention(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.heads, self.kv_heads = s["heads"], s["kv_heads"]
        self.head_dim = s["hidden"] // s["heads"]
        self.q_proj = nn.Linear(s["hidden"], self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(s["hidden"], self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(s["hidden"], self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, s["hidden"], bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.heads // self.kv_heads
        if groups > 1:  # HF's repeat_kv: kv head i serves query heads i*groups .. (i+1)*groups-1
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        if HAS_SDPA:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
            out = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.gate_proj = nn.Linear(s["hidden"], s["intermediate"], bias=False)
        self.up_proj = nn.Linear(s["hidden"], s["intermediate"], bias=False)
        self.down_proj = nn.Linear(s["intermediate"], s["hidden"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.input_layernorm = RMSNorm(s["hidden"], RMS_NORM_EPS)
        self.self_attn = Attention(s)
        self.post_attention_layernorm = RMSNorm(s["hidden"], RMS_NORM_EPS)
        self.mlp = Mlp(s)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class PlainLlama(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.embed_tokens = nn.Embedding(s["vocab"], s["hidden"])
        self.layers = nn.ModuleList(DecoderLayer(s) for _ in range(s["layers"]))
        self.norm = RMSNorm(s["hidden"], RMS_NORM_EPS)
        self.lm_head = nn.Linear(s["hidden"], s["vocab"], bias=False)
        for module in self.modules():  # HF's _init_weights: normal(0, initializer_range = 0.02)
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
        if s["tied"]:
            self.lm_head.weight = self.embed_tokens.weight
        head_dim = s["hidden"] // s["heads"]
        inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(s["seq"], dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        self.register_buffer("mask", torch.full((s["seq"], s["seq"]), float("-inf")).triu(1), persistent=False)

    def forward(self, ids):
        t = ids.shape[1]
        h = self.embed_tokens(ids)
        cos, sin, mask = self.cos[:t], self.sin[:t], self.mask[:t, :t]
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        return self.lm_head(self.norm(h))


def build_plain(s):
    model = PlainLlama(s)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in model.layers:
        for name in TARGET_MODULES:
            setattr(layer.self_attn, name, LoraLinear(getattr(layer.self_attn, name), RANK, ALPHA))

    def loss_of(ids):
        logits = model(ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, s["vocab"]), ids[:, 1:].reshape(-1))

    pairs = [(m.base_layer.weight, m.lora_A, m.lora_B, m.scaling) for m in model.modules() if isinstance(m, LoraLinear)]
    return model, loss_of, pairs


# --- transformers + PEFT -------------------------------------------------------------------------


def peft_config(variant):
    """The PEFT config of a bench variant: LoRA, DoRA (LoRA with use_dora) or VeRA, at the recipe's rank."""
    from peft import LoraConfig as PeftLoraConfig, VeraConfig

    if variant == "vera":
        return VeraConfig(r=RANK, target_modules=TARGET_MODULES, vera_dropout=0.0)
    return PeftLoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGET_MODULES, lora_dropout=0.0, use_dora=variant == "dora")


def build_peft(s, variant="lora"):
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"], num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=RMS_NORM_EPS, rope_theta=ROPE_THETA, tie_word_embeddings=s["tied"], hidden_act="silu", attention_bias=False,
    )
    model = get_peft_model(LlamaForCausalLM(config), peft_config(variant))

    def loss_of(ids):
        return model(input_ids=ids, labels=ids).loss

    pairs = []
    for module in model.modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, nn.ModuleDict) and "default" in lora_a:
            base = getattr(module, "base_layer", module)
            pairs.append((base.weight, lora_a["default"].weight, module.lora_B["default"].weight, module.scaling["default"]))
    return model, loss_of, pairs


# --- measurement ---------------------------------------------------------------------------------


def rss_bytes():
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class RssPeak:
    """Peak RSS above what the process held when entered, sampled every millisecond by a thread (torch
    releases the GIL in its kernels, so the sampler runs during them). Entered before the model is built,
    so the figure includes the weights, as the tfjs bench's engine bytes do. Freed memory is handed back
    to the OS first (glibc's malloc_trim), so an earlier run's heap does not hide this one's."""

    def __enter__(self):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base = rss_bytes()
        self.peak = self.base
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.001):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())
        return False

    @property
    def bytes(self):
        return self.peak - self.base


def new_optimizer(model):
    # Everything that trains: LoRA's A and B, DoRA's magnitude too, VeRA's lambda_b and lambda_d.
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)


def knot(pairs, history):
    """A COLA knot: keep the link on the host, merge it into W, start a fresh link."""
    with torch.no_grad():
        history.append([(a.detach().to("cpu", copy=True), b.detach().to("cpu", copy=True)) for _, a, b, _ in pairs])
        for weight, a, b, scale in pairs:
            weight.add_((b @ a) * scale)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            b.zero_()


def run_method(build, s, ids, warmup, steps, chain):
    if on_cuda():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = timed_run(build, s, ids, warmup, steps, chain)
        result["peakBytes"] = torch.cuda.max_memory_allocated() - base
        return result
    with RssPeak() as peak:
        result = timed_run(build, s, ids, warmup, steps, chain)
    result["peakBytes"] = peak.bytes
    return result


def timed_run(build, s, ids, warmup, steps, chain):
    torch.manual_seed(SEED)
    model, loss_of, pairs = build(s)
    model.to(DEVICE)  # moves parameters in place: `pairs` still refers to them
    model.train()
    state = {"optimizer": new_optimizer(model)}
    history = []

    def step():
        loss = loss_of(ids)
        loss.backward()
        state["optimizer"].step()
        state["optimizer"].zero_grad(set_to_none=True)
        return loss.item()

    def do_knot():
        knot(pairs, history)
        state["optimizer"] = new_optimizer(model)  # COLA: a new optimizer per link

    # Same layout as TfjsRun.ts: warm-up (one knot in it for COLA), one untimed step, the window.
    for index in range(warmup):
        if chain and warmup >= 2 and index == warmup - 1:
            do_knot()
        step()
    step()
    offsets = knot_offsets(steps) if chain else []
    step_ms, knot_ms = [], []
    last_loss = float("nan")
    window_start = time.perf_counter()
    for index in range(steps):
        if index in offsets:
            started = time.perf_counter()
            do_knot()
            sync()
            knot_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        last_loss = step()
        step_ms.append((time.perf_counter() - started) * 1000)
    window_ms = (time.perf_counter() - window_start) * 1000
    tokens = s["batch"] * s["seq"]
    result = {
        "warmup": warmup, "steps": steps, "medianStepMs": median(step_ms), "stepMs": step_ms,
        "tokensPerSecond": tokens / (median(step_ms) / 1000), "windowMs": window_ms, "lastLoss": last_loss,
    }
    if chain:
        result.update({"knotOffsets": offsets, "knotMs": knot_ms, "medianKnotMs": median(knot_ms) if knot_ms else float("nan")})
    return result


def matmul_ceiling(size=1024, warmup=2, runs=5):
    a = (torch.rand(size, size) * 2 - 1).to(DEVICE)
    b = (torch.rand(size, size) * 2 - 1).to(DEVICE)
    times = []
    for index in range(warmup + runs):
        sync()
        started = time.perf_counter()
        torch.mm(a, b)
        sync()
        if index >= warmup:
            times.append((time.perf_counter() - started) * 1000)
    ms = median(times)
    return {"size": size, "medianMs": ms, "gflops": 2 * size ** 3 / (ms / 1000) / 1e9}


def blas_info():
    """torch's BLAS_INFO build setting plus the BLAS library actually mapped into this process."""
    built = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    loaded = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                name = os.path.basename(line.split()[-1]) if "/" in line else ""
                if re.search(r"blas|mkl|blis|accelerate", name, re.I):
                    loaded.add(name)
    except OSError:
        pass
    return f"BLAS_INFO={built.group(1) if built else '?'}" + (f"; loaded {', '.join(sorted(loaded))}" if loaded else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", action="append", required=True, help="NAME:WARMUP:STEPS, e.g. wide:2:9 (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: os.cpu_count())")
    parser.add_argument("--implementation", choices=["auto", "peft", "plain"], default="auto")
    parser.add_argument("--variants", default="", help="comma-separated PEFT variants timed beside LoRA (dora, vera); peft only")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda[:N]")
    args = parser.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]

    global DEVICE
    DEVICE = args.device
    if on_cuda() and not torch.cuda.is_available():
        unavailable(f"--device {DEVICE}, but torch {torch.__version__} has no CUDA device (torch.cuda.is_available() is False)")
    device_name = torch.cuda.get_device_name(torch.device(DEVICE)) if on_cuda() else platform.processor() or platform.machine()

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    implementation, build = "plain-pytorch-lora", build_plain
    if args.implementation != "plain":
        try:
            import peft  # noqa: F401
            import transformers  # noqa: F401
            implementation, build = "peft", build_peft
        except Exception as error:  # noqa: BLE001
            if args.implementation == "peft":
                unavailable(f"--implementation peft, but transformers/peft do not import ({type(error).__name__}: {error})")
    log(f"torch {torch.__version__}, {threads} threads, {implementation}, sdpa {'yes' if HAS_SDPA else 'no (masked softmax)'}, device {DEVICE} ({device_name})")

    ceiling = matmul_ceiling(4096 if on_cuda() else 1024)
    log(f"matmul ceiling {ceiling['gflops']:.1f} GFLOP/s")
    results = []
    for spec in args.shape:
        name, warmup, steps = spec.split(":")
        s = SHAPES[name]
        warmup, steps = int(warmup), int(steps)
        ids = token_ids(s).to(DEVICE)
        lora = run_method(build, s, ids, warmup, steps, chain=False)
        log(f"{name} lora: median {lora['medianStepMs']:.1f} ms ({lora['tokensPerSecond']:.0f} tok/s)")
        cola = run_method(build, s, ids, warmup, steps, chain=True)
        log(f"{name} cola: median {cola['medianStepMs']:.1f} ms, knot {cola['medianKnotMs']:.1f} ms")
        variants = {}
        if implementation == "peft":
            for variant in args.variants:
                variants[variant] = run_method(lambda shape: build_peft(shape, variant), s, ids, warmup, steps, chain=False)
                log(f"{name} {variant}: median {variants[variant]['medianStepMs']:.1f} ms")
        results.append({"shape": name, "tokensPerBatch": s["batch"] * s["seq"], "lora": lora, "cola": cola, "variants": variants})

    print(json.dumps({
        "status": "ok",
        "torchVersion": torch.__version__,
        "threads": torch.get_num_threads(),
        "implementation": implementation,
        "device": DEVICE,
        "deviceName": device_name,
        "blas": blas_info(),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "ceiling": ceiling,
        # Whole-process peak RSS (Linux: KiB): not comparable with tfjs's tensor bytes, kept for the record.
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "shapes": results,
    }), flush=True)


if __name__ == "__main__":
    main()
