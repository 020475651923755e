#!/usr/bin/env python3
"""PyTorch CPU side of the WAE-MMD layer profile: forward and forward + backward time of each
convolution and transposed convolution of LossGrad Table 6's WAE at batch 64 (f32), with the
GFLOP/s each reaches, as the Rust profile prints it
(`cargo test --release -p steplab-train --lib timing::time_wae_layers -- --ignored --nocapture`).

Multiply-adds: every output pixel of a convolution and every input pixel of a transposed one,
times c_in * c_out * 25; the backward pass does twice the forward's work. Run with the bench
venv: .venv-bench/bin/python scripts/bench_pytorch_wae_layers.py [--threads N] [--reps R]
"""

import argparse
import time

import torch

LAYERS = [
    # name, transposed, c_in, c_out, input side, stride
    ("enc.conv0", False, 3, 128, 64, 2),
    ("enc.conv1", False, 128, 256, 32, 2),
    ("enc.conv2", False, 256, 512, 16, 2),
    ("enc.conv3", False, 512, 1024, 8, 2),
    ("dec.deconv0", True, 1024, 512, 8, 2),
    ("dec.deconv1", True, 512, 256, 16, 2),
    ("dec.deconv2", True, 256, 128, 32, 2),
    ("dec.out", True, 128, 3, 64, 1),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    totals = {False: 0.0, True: 0.0}
    for name, transposed, c_in, c_out, side, stride in LAYERS:
        x = torch.rand(args.batch, c_in, side, side) - 0.5
        if transposed:
            w = torch.rand(c_in, c_out, 5, 5) - 0.5
            op = lambda x, w: torch.nn.functional.conv_transpose2d(
                x, w, stride=stride, padding=2, output_padding=stride - 1)
            pixels = side * side
        else:
            w = torch.rand(c_out, c_in, 5, 5) - 0.5
            op = lambda x, w: torch.nn.functional.conv2d(x, w, stride=stride, padding=2)
            pixels = (side // stride) ** 2
        macs = args.batch * pixels * c_in * c_out * 25
        with torch.no_grad():
            op(x, w).sum().item()
            t = time.perf_counter()
            for _ in range(args.reps):
                op(x, w).sum().item()
            forward = (time.perf_counter() - t) / args.reps
        t = time.perf_counter()
        for _ in range(args.reps):
            xt = x.clone().requires_grad_()
            wt = w.clone().requires_grad_()
            op(xt, wt).sum().backward()
            wt.grad.sum().item()
            xt.grad.sum().item()
        both = (time.perf_counter() - t) / args.reps
        totals[transposed] += both
        print(f"{name:<12} fwd {forward * 1e3:8.1f} ms ({2 * macs / forward / 1e9:5.1f} GFLOP/s)  "
              f"fwd+bwd {both * 1e3:8.1f} ms ({6 * macs / both / 1e9:5.1f} GFLOP/s)")
    print(f"convolutions {totals[False]:.2f} s, transposed convolutions {totals[True]:.2f} s "
          f"per forward + backward")


if __name__ == "__main__":
    main()
