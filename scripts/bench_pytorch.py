#!/usr/bin/env python3
"""PyTorch CPU baseline: training steps per second of SGD and LossGrad on the models of
`train bench --model`.

Models (--model; the same networks as crates/models, parameter counts asserted), random inputs
(fixed seed); the classifiers train softmax cross-entropy on uniform [0,1) "pixels" and uniform
labels of 10 classes:
  mlp            MLP 784-500-300-100-10 (ReLU, biases; 573,910 parameters), batch 100
  resnet20       He et al.'s CIFAR ResNet-20, option-A shortcuts, BN (269,722), 3x32x32, batch 128
  lenet5         LeNet-5 of PyTorch's CIFAR-10 tutorial, no dropout (62,006), 3x32x32, batch 32
  cifar_convnet  LossGrad's Table 7 convnet, valid padding (189,230), 3x32x32, batch 100
  wrn16_4        Zagoruyko & Komodakis's pre-activation WRN-16-4 (kind = "wrn" at its defaults),
                 1x1 shortcuts without bias, no dropout (2,748,890), 3x32x32, batch 128
  bilstm         LossGrad's IMDb BiLSTM: frozen 25000x100 embedding, nn.LSTM(100, 256,
                 bidirectional), final states -> Linear(512, 1), BCE with logits (733,697 trained),
                 token ids of 400-token reviews (no padding), batch 100
  wae_mmd        LossGrad's Table 6 WAE-MMD (39,742,531), as crates/models/src/generative/wae.rs:
                 encoder 4 x [conv 5x5 stride 2 (128, 256, 512, 1024) -> BN -> ReLU] -> FC 16384-64
                 = z; decoder FC 64-65536 -> ReLU -> [1024, 8, 8] -> 3 x [transposed conv 5x5
                 stride 2 (512, 256, 128) -> BN -> ReLU] -> transposed conv 5x5 stride 1 -> 3 -> tanh;
                 PyTorch's default initialisation; 3x64x64 pixels uniform in [-1,1), the target is
                 the input, batch 64. Loss: reconstruction summed over pixels / batch + 100 * IMQ
                 MMD (mmd.rs: scales C = s * 2 * 64 for s in .1 .2 .5 1 2 5 10, U-statistic within
                 terms) between z and prior draws N(0, I); prior draws per step (torch.randn, seeded
                 generator, drawn once per step) shared by LossGrad's probe, like the Rust step
--batch overrides the batch size. A pool of pre-generated batches is cycled so data generation is
not timed (wae_mmd's prior draws, [batch, 64] per step, are; the pool itself, 16 x 64 images =
48 MiB at batch 64, is in the peak RSS). BN layers are in training mode throughout; the LossGrad probe forward (under
torch.no_grad) also updates BN's running statistics, which the Rust probe leaves alone: the cost
of that update is a few per-channel vector operations.

Methods (one training step each):
  sgd       torch.optim.SGD(lr=0.01): zero_grad, forward, backward, step.
  lossgrad  hand-written LossGrad (Wojcik et al., Alg. 1), the same rule as
            crates/optim/src/lossgrad.rs:
              f0, g = loss and gradient (one forward + backward)
              s = sum over parameters of ||g||^2
              p -= h*g                                  (under torch.no_grad, old h)
              f1 = loss on the same batch               (one extra forward under torch.no_grad;
                                                         wae_mmd: the same prior draws too)
              r = (f1 - (f0 - h*s)) / (h*s + 1e-25)
              h = h / c if r > 0.5 (or f1, r non-finite) else h * c,   c = 1.05
            A non-finite s skips the update and divides h by c.

Timing: per method, a fresh model, WARMUP (20) untimed steps, then ROUNDS (5) rounds of STEPS
(200) timed steps; the reported number is the median over rounds of STEPS / seconds.
Each method runs in its own child process so that its peak RSS (resource.getrusage ru_maxrss)
is its own; --method runs one method in this process. The peak RSS includes what `import torch`
alone costs (printed too: ~700 MiB for PyPI's CUDA build of torch 2.15 on Linux x86_64, whose
CUDA libraries are mapped even on the CPU) and ~175 MiB more because constructing a torch.optim
optimizer imports torch._dynamo (~900 more Python modules); every child constructs one before
timing so that all methods start from the same process state (the leaner process was ~25% slower
for lossgrad, from glibc heap trimming). Compare RSS with a Rust binary with that in mind.

Output: human-readable lines, then one machine-readable line per method, last:
  pytorch,<method>,<steps_per_s>,<peak_rss_mib>
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("sgd", "lossgrad")
LAYERS = (784, 500, 300, 100, 10)
# name: (parameter count, input shape of one sample, default batch size)
MODELS = {
    "mlp": (573_910, (784,), 100),
    "resnet20": (269_722, (3, 32, 32), 128),
    "lenet5": (62_006, (3, 32, 32), 32),
    "cifar_convnet": (189_230, (3, 32, 32), 100),
    "wrn16_4": (2_748_890, (3, 32, 32), 128),
    "bilstm": (733_697, (400,), 100),
    "wae_mmd": (39_742_531, (3, 64, 64), 64),
}
VOCAB = 25_000
CLASSES = 10
RATIO_EPS = 1e-25
# wae_mmd (WaeMmdConfig's defaults): base channels, code size, MMD weight, prior variance
WAE_WIDTH = 128
WAE_Z = 64
WAE_LAMBDA = 100.0
WAE_PRIOR_VAR = 1.0
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="timed steps per round (default 200)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds; the median is reported (default 5)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps before the rounds (default 20)")
    p.add_argument("--model", choices=tuple(MODELS), default="mlp", help="the network timed (default mlp)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the model's, see above)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N); default: torch's own default")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")
    p.add_argument("--pool", type=int, default=16, help="pre-generated batches cycled through (default 16)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--lossgrad-h0", type=float, default=1e-4,
                   help="LossGrad initial step size h0 (default 1e-4, the paper's and the Rust crate's)")
    p.add_argument("--lossgrad-c", type=float, default=1.05, help="LossGrad factor c (default 1.05)")
    p.add_argument("--method", choices=METHODS, action="append", default=None,
                   help="run only this method, in this process (repeatable); default: each method in a child process")
    args = p.parse_args(argv)
    if args.batch is None:
        args.batch = MODELS[args.model][2]
    for name in ("steps", "rounds", "batch", "pool"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if not args.lossgrad_c > 1.0:
        p.error("--lossgrad-c must be > 1")
    return args


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return maxrss / scale


def build_mlp(torch):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        layers.append(torch.nn.Linear(n_in, n_out, bias=True))
        if i < len(LAYERS) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def build_resnet20(torch):
    """He et al.'s CIFAR ResNet (n = 3), as crates/models/src/vision/resnet.rs: 3x3 convs without
    bias, each followed by BN; option-A shortcuts (strided identity, zero-padded channels)."""
    nn, F = torch.nn, torch.nn.functional

    class ShortcutA(nn.Module):
        def __init__(self, pad):
            super().__init__()
            self.pad = pad

        def forward(self, x):
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = ShortcutA((c_out - c_in) // 2) if stride != 1 or c_in != c_out else nn.Identity()

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return F.relu(y + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(16)
            blocks, c_in = [], 16
            for stage, width in enumerate((16, 32, 64)):
                for i in range(n):
                    blocks.append(Block(c_in, width, 2 if stage > 0 and i == 0 else 1))
                    c_in = width
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, CLASSES)
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight)

        def forward(self, x):
            y = self.blocks(F.relu(self.bn(self.conv(x))))
            return self.fc(y.mean(dim=(2, 3)))

    return ResNet()


def build_lenet5(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, CLASSES),
    )


def build_cifar_convnet(torch):
    """LossGrad Table 7, as crates/models/src/vision/cifar_convnet.rs: pooling before the ReLU,
    weights N(0, 0.05^2), biases 0.2."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(3, 30, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(30, 40, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(40, 50, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(450, 250), nn.ReLU(), nn.Linear(250, 100), nn.ReLU(), nn.Linear(100, CLASSES),
    )
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, std=0.05)
            nn.init.constant_(m.bias, 0.2)
    return model


def build_wrn16_4(torch):
    """The pre-activation wide ResNet of crates/models/src/vision/wrn.rs at its defaults (depth
    16, width 4, dropout 0), as xternalz/WideResNet-pytorch: conv 3x3 3->16, three groups of
    n = 2 blocks at widths 64, 128, 256 (the first block of groups 2 and 3 with stride 2), BN,
    ReLU, global average pool, FC 256->10. Block: a = relu(bn1(x)), y = conv2(relu(bn2(conv1(a))))
    (conv1 carries the stride), out = y + x, or y + shortcut(a) with a 1x1 strided conv where
    width or resolution changes. Convs without bias; conv weights Kaiming normal (fan-out), BN
    gamma 1, beta 0, FC bias 0 and PyTorch's default FC weight."""
    nn, F = torch.nn, torch.nn.functional
    depth, k = 16, 4
    n = (depth - 4) // 6

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(c_in)
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            project = stride != 1 or c_in != c_out
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False) if project else None

        def forward(self, x):
            a = F.relu(self.bn1(x))
            y = self.conv2(F.relu(self.bn2(self.conv1(a))))  # dropout 0: none between the convs
            return y + (x if self.shortcut is None else self.shortcut(a))

    class WideResnet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            blocks, c_in = [], 16
            for group, base in enumerate((16, 32, 64)):
                for i in range(n):
                    blocks.append(Block(c_in, base * k, 2 if group > 0 and i == 0 else 1))
                    c_in = base * k
            self.blocks = nn.Sequential(*blocks)
            self.bn = nn.BatchNorm2d(c_in)
            self.fc = nn.Linear(c_in, CLASSES)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(self.fc.bias)

        def forward(self, x):
            y = F.relu(self.bn(self.blocks(self.conv(x))))
            return self.fc(y.mean(dim=(2, 3)))

    return WideResnet()


def build_bilstm(torch):
    nn = torch.nn

    class Bilstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, 100)
            self.embedding.weight.requires_grad_(False)
            self.lstm = nn.LSTM(100, 256, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(512, 1)

        def forward(self, ids):
            _, (h, _) = self.lstm(self.embedding(ids))
            return self.fc(torch.cat([h[0], h[1]], dim=1)).squeeze(1)

    return Bilstm()


def mmd_imq(torch, z, prior, base):
    """The multi-scale IMQ MMD of crates/models/src/generative/mmd.rs between codes z and prior
    draws prior, both [n, d]: for C = s * base, k(a, b) = C / (C + |a - b|^2), the U-statistic
    within terms (diagonal removed, / n(n-1)) minus 2/n^2 times the cross sum, summed over s.
    With n = 1 the within terms have no pairs and are left out, as in the Rust code."""
    n = z.shape[0]

    def squared_distances(a, b):
        return a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1, keepdim=True).t() - 2.0 * (a @ b.t())

    d_zz = squared_distances(z, z)
    d_pp = squared_distances(prior, prior)
    d_zp = squared_distances(z, prior)
    mask = 1.0 - torch.eye(n, dtype=z.dtype, device=z.device) if n > 1 else None
    pairs = max(n * (n - 1), 1)
    total = None
    for scale in IMQ_SCALES:
        c = scale * base
        term = -(c / (c + d_zp)).sum() * (2.0 / (n * n))
        if mask is not None:
            term = ((c / (c + d_zz) + c / (c + d_pp)) * mask).sum() / pairs + term
        total = term if total is None else total + term
    return total


def build_wae_mmd(torch):
    """The WAE-MMD of crates/models/src/generative/wae.rs at its defaults (width 128, z 64,
    lambda 100, sigma^2 1, tanh output), PyTorch's default initialisation."""
    nn, F = torch.nn, torch.nn.functional
    width, z_dim, c, side = WAE_WIDTH, WAE_Z, 3, 64

    class WaeMmd(nn.Module):
        def __init__(self):
            super().__init__()
            enc, c_in = [], c
            for factor in (1, 2, 4, 8):
                enc += [nn.Conv2d(c_in, width * factor, 5, 2, 2, bias=True),
                        nn.BatchNorm2d(width * factor), nn.ReLU()]
                c_in = width * factor
            self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c_in * (side // 16) ** 2, z_dim))
            self.top, self.start = width * 8, side // 8
            self.project = nn.Linear(z_dim, self.top * self.start ** 2)
            dec, c_in = [], self.top
            for factor in (4, 2, 1):
                dec += [nn.ConvTranspose2d(c_in, width * factor, 5, 2, 2, output_padding=1, bias=True),
                        nn.BatchNorm2d(width * factor), nn.ReLU()]
                c_in = width * factor
            self.decoder = nn.Sequential(*dec, nn.ConvTranspose2d(c_in, c, 5, 1, 2), nn.Tanh())

        def forward(self, x):
            """(reconstruction x_hat, codes z)."""
            z = self.encoder(x)
            h = F.relu(self.project(z)).reshape(x.shape[0], self.top, self.start, self.start)
            return self.decoder(h), z

        def objective(self, x, prior):
            """Squared error summed over pixels / batch + lambda * MMD_IMQ(z, prior draws)."""
            x_hat, z = self(x)
            reconstruction = (x_hat - x).pow(2).sum() / x.shape[0]
            return reconstruction + WAE_LAMBDA * mmd_imq(torch, z, prior, 2.0 * z_dim * WAE_PRIOR_VAR)

    return WaeMmd()


def build_model(torch, name):
    model = {"mlp": build_mlp, "resnet20": build_resnet20, "lenet5": build_lenet5,
             "cifar_convnet": build_cifar_convnet, "wrn16_4": build_wrn16_4, "bilstm": build_bilstm,
             "wae_mmd": build_wae_mmd}[name](torch)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = MODELS[name][0]
    assert n_params == expected, f"{name} has {n_params} parameters, expected {expected}"
    model.train()
    return model


def make_batches(torch, args):
    g = torch.Generator().manual_seed(args.seed + 1)
    shape = MODELS[args.model][1]
    if args.model == "bilstm":
        xs = torch.randint(2, VOCAB, (args.pool, args.batch, *shape), generator=g)
        ys = torch.randint(0, 2, (args.pool, args.batch), generator=g).float()
    elif args.model == "wae_mmd":
        xs = torch.rand(args.pool, args.batch, *shape, generator=g) * 2 - 1
        return [(xs[i].contiguous(),) * 2 for i in range(args.pool)]  # the target is the input
    else:
        xs = torch.rand(args.pool, args.batch, *shape, generator=g)
        ys = torch.randint(0, CLASSES, (args.pool, args.batch), generator=g)
    return [(xs[i].contiguous(), ys[i].contiguous()) for i in range(args.pool)]


def loss_function(torch, args):
    if args.model == "bilstm":
        return torch.nn.functional.binary_cross_entropy_with_logits
    return torch.nn.functional.cross_entropy


def loss_name(model: str) -> str:
    return {"bilstm": "BCE with logits",
            "wae_mmd": f"reconstruction summed over pixels / batch + {WAE_LAMBDA:g} * IMQ MMD"}.get(
        model, "softmax cross-entropy")


def make_objective(torch, model, args):
    """(objective(x, y, noise) -> loss tensor, draw() -> the step's noise). A step calls draw()
    once and passes the result to each of its forwards (LossGrad's probe too): the classifiers
    have none; wae_mmd's is the step's prior draws z~ ~ N(0, sigma^2 I) [batch, z]."""
    if args.model == "wae_mmd":
        g = torch.Generator().manual_seed(args.seed + 2)
        std = math.sqrt(WAE_PRIOR_VAR)

        def draw():
            return torch.randn(args.batch, WAE_Z, generator=g) * std

        return (lambda x, y, prior: model.objective(x, prior)), draw
    loss_fn = loss_function(torch, args)
    return (lambda x, y, noise: loss_fn(model(x), y)), (lambda: None)


def make_sgd_step(torch, model, args):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    objective, draw = make_objective(torch, model, args)

    def step(x, y):
        opt.zero_grad()
        loss = objective(x, y, draw())
        loss.backward()
        opt.step()
        return loss

    return step, lambda: args.lr


def make_lossgrad_step(torch, model, args):
    params = [p for p in model.parameters() if p.requires_grad]
    objective, draw = make_objective(torch, model, args)
    c = args.lossgrad_c
    state = {"h": args.lossgrad_h0, "skipped": 0, "nonfinite_f1": 0}

    def step(x, y):
        h = state["h"]
        for p in params:
            p.grad = None
        noise = draw()  # once per step: the probe below sees the same prior draws
        loss = objective(x, y, noise)
        loss.backward()
        with torch.no_grad():
            f0 = loss.item()
            s = torch.stack([p.grad.pow(2).sum() for p in params]).sum().item()
            if not math.isfinite(s):
                state["h"] = h / c
                state["skipped"] += 1  # no update and no extra forward: a cheaper step
                return loss
            for p in params:
                p.sub_(p.grad, alpha=h)  # p -= h*g with the old h
            f1 = objective(x, y, noise).item()  # the extra forward pass, same batch (and noise)
        lred = h * s
        r = (f1 - (f0 - lred)) / (lred + RATIO_EPS)
        if not math.isfinite(f1):
            state["nonfinite_f1"] += 1
        if not math.isfinite(f1) or not math.isfinite(r) or r > 0.5:
            state["h"] = h / c
        else:
            state["h"] = h * c
        return loss

    def notes():
        if state["skipped"] or state["nonfinite_f1"]:
            return (f"WARNING: {state['skipped']} steps skipped for a non-finite gradient norm, "
                    f"{state['nonfinite_f1']} with a non-finite probe loss; steps/s is not comparable")
        return "no non-finite steps"

    step.notes = notes
    return step, lambda: state["h"]


def run_method(torch, method: str, args) -> tuple[float, list[float], float, float, str]:
    """Returns (median steps/s, per-round steps/s, final loss, final step size, notes)."""
    torch.manual_seed(args.seed)
    model = build_model(torch, args.model)
    batches = make_batches(torch, args)
    make = {"sgd": make_sgd_step, "lossgrad": make_lossgrad_step}[method]
    step, current_lr = make(torch, model, args)
    n_pool = len(batches)
    i = 0
    loss = None
    for _ in range(args.warmup):
        x, y = batches[i % n_pool]
        loss = step(x, y)
        i += 1
    rates = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            x, y = batches[i % n_pool]
            loss = step(x, y)
            i += 1
        final = loss.item()  # the step's own .item() calls already sync; this is cheap
        dt = time.perf_counter() - t0
        rates.append(args.steps / dt)
    notes = getattr(step, "notes", lambda: "")()
    return statistics.median(rates), rates, final, current_lr(), notes


def machine_line(method: str, steps_per_s: float, rss_mib: float) -> str:
    return f"pytorch,{method},{steps_per_s:.3f},{rss_mib:.1f}"


def run_in_process(args) -> list[str]:
    import torch

    import_rss = peak_rss_mib()
    # Same process state for every method: constructing a torch.optim optimizer imports
    # torch._dynamo (~900 modules, ~175 MiB). Without this, the sgd process alone has them, and
    # the different heap layout alone changed lossgrad's steps/s by ~25% here (glibc malloc
    # trimming and re-faulting the top of the heap every step in the leaner process).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    lines = []
    for method in args.method:
        median, rates, final, lr, notes = run_method(torch, method, args)
        rss = peak_rss_mib()
        rounds = ", ".join(f"{r:.1f}" for r in rates)
        print(f"{method}: median {median:.2f} steps/s over {args.rounds} rounds of {args.steps} steps "
              f"(rounds: {rounds}); last loss {final:.4f}, step size now {lr:.4g}; "
              f"peak RSS {rss:.1f} MiB (of which {import_rss:.1f} MiB right after `import torch`)"
              + (f"; {notes}" if notes else ""), flush=True)
        lines.append(machine_line(method, median, rss))
    return lines


def header(args) -> None:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"PyTorch CPU baseline: torch {torch.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs", flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"load average before the run (1/5/15 min): {load} -- other work on the CPUs skews the numbers",
          flush=True)
    print(f"torch threads: {torch.get_num_threads()} "
          f"({'--threads' if args.threads is not None else 'torch default'}), "
          f"interop threads: {torch.get_num_interop_threads()}", flush=True)
    print(f"model: {args.model}, {MODELS[args.model][0]} parameters, input {MODELS[args.model][1]}, "
          f"{loss_name(args.model)}, batch {args.batch}, random inputs (seed {args.seed})", flush=True)
    print(f"timing: {args.warmup} warm-up steps, then {args.rounds} rounds x {args.steps} steps, "
          f"median steps/s; SGD lr {args.lr}; LossGrad h0 {args.lossgrad_h0}, c {args.lossgrad_c}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.method:
        # Single-process mode (also what the children run): print results and machine lines.
        lines = run_in_process(args)
        for line in lines:
            print(line, flush=True)
        return 0

    header(args)
    import torch

    print(f"torch_version,{torch.__version__}", flush=True)
    passthrough = [
        "--steps", str(args.steps), "--rounds", str(args.rounds), "--warmup", str(args.warmup),
        "--model", args.model, "--batch", str(args.batch), "--seed", str(args.seed), "--pool", str(args.pool),
        "--lr", repr(args.lr), "--lossgrad-h0", repr(args.lossgrad_h0), "--lossgrad-c", repr(args.lossgrad_c),
    ]
    if args.threads is not None:
        passthrough += ["--threads", str(args.threads)]
    machine_lines = []
    for method in METHODS:
        cmd = [sys.executable, os.path.abspath(__file__), "--method", method, *passthrough]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith("pytorch,"):
                machine_lines.append(line)
            else:
                print(line, flush=True)
        if proc.returncode != 0:
            print(f"error: {method} run failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
    for line in machine_lines:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
