#!/usr/bin/env python3
"""Runs `pelt bench` and the PyTorch reference (bench/reference.py) in one go on the same
contexts and weights and prints the speed ratios and the largest vector difference.

    python bench/compare.py [--pelt target/release/pelt] [--batch 32] [--models bundled,bert-base]
        [--device cpu|cuda] [--dtype f32|bf16]

Both sides run on the same device in the same dtype (`--device`, `--dtype` go to `pelt bench`
and to reference.py) and are timed as whole processes too (model loading included).
"""
import argparse, json, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pelt", default=os.path.join(ROOT, "target/release/pelt"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--models", default="bundled,bert-base")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--pelt-args", default="", help="extra arguments for `pelt bench`")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    side = ["--device", args.device, "--dtype", args.dtype]
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; {args.device}, {args.dtype}")
    rows = []
    for label in args.models.split(","):
        out = os.path.join(tmp, f"pelt-{label}.json")
        wall = timed([args.pelt, "bench", "--model", label, "--batch", str(args.batch), "--json", out] + side
                     + args.pelt_args.split())
        ours = json.load(open(out))
        o = ours[label]
        n = o["contexts"]
        print(f"\n== {label} ({o['dir']}): {n} contexts, {o['dtype']}, {o['path']} path, dense layers on {o['matmul']}")
        print(f"matmul peak ({ours.get('matmul_peak_dtype', '?')}, the path pelt uses): "
              f"{ours.get('matmul_peak_gflops', float('nan')):.0f} GFLOP/s")
        print(f"{'':18}{'ctx/s encode':>14}{'ctx/s process':>15}{'GFLOP/s':>9}{'peak MiB':>10}")
        print(f"{'pelt':18}{o['contexts_per_sec']:14.1f}{n / wall:15.1f}{o['gflops']:9.1f}{o['peak_rss_mb']:10.0f}")
        for mode in ["pelt", "dynamic", "sorted"]:
            rj = os.path.join(tmp, f"ref-{label}-{mode}.json")
            rwall = timed([sys.executable, os.path.join(HERE, "reference.py"), o["dir"], "--mode", mode,
                           "--batch", str(args.batch), "--json", rj] + side)
            r = json.load(open(rj))
            diff = max(abs(a - b) for e, v in r["vectors"].items() for a, b in zip(v, o["vectors"][e]))
            name = {"pelt": "torch, pad to 64", "dynamic": "torch, dynamic", "sorted": "torch, sorted"}[mode]
            print(f"{name:18}{r['contexts_per_sec']:14.1f}{n / rwall:15.1f}{r['gflops']:9.1f}{r['peak_rss_mb']:10.0f}"
                  f"   ratio (process) {wall and rwall / wall:.2f}x, encode {o['contexts_per_sec'] / r['contexts_per_sec']:.2f}x,"
                  f" max|diff| {diff:.1e}, torch matmul peak {r['matmul_peak_gflops']:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
