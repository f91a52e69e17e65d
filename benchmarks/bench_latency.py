"""Latency of each model and of the cascade, at batch 1 and batch N, on the CPU and on CUDA when present.

For each device: the saver's and the base's model milliseconds per image (``Detector.predict``:
pre-processing, forward pass, NMS) at batch 1 and at batch ``--batch``, and the cascade's through
the front door (``TinySaver.predict`` on in-memory arrays, so ``Results`` are built too), set
against the ideal ``T_S + (1 - r) * T_B`` at the same batch size (``r``: the exit ratio at ``--t``).
Images are decoded once, up front. Each timing synchronises the device before and after
(:func:`tinysaver_det.timing.synchronize`), follows a warm-up, and is the best of ``--repeats``
interleaved runs, so a busy machine disturbs all of them alike.

    nice -n 10 python benchmarks/bench_latency.py                      # demo pico -> s, 64 images
    python benchmarks/bench_latency.py --saver yolov8n.pt --base yolov8x.pt --images DIR --imgsz 640
    python benchmarks/bench_latency.py --devices cuda:0 --half      # fp32 and fp16 on the GPU
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from time import perf_counter

os.environ.setdefault("YOLO_OFFLINE", "1")

import cv2  # noqa: E402

from tinysaver_det import assets  # noqa: E402
from tinysaver_det.api import TinySaver  # noqa: E402
from tinysaver_det.timing import synchronize  # noqa: E402


def ms_per_image(run, images, batch: int) -> float:
    """Milliseconds per image of ``run(chunk)`` over ``images`` in chunks of ``batch``, device synchronised."""
    synchronize()
    start = perf_counter()
    for i in range(0, len(images), batch):
        run(images[i : i + batch])
    synchronize()
    return (perf_counter() - start) * 1e3 / len(images)


def measure(cascade: TinySaver, images, batches, repeats: int) -> dict:
    """Best-of-``repeats`` ms/img of saver, base and cascade at each batch size, and the exit ratio."""
    ids = list(range(len(images)))
    models = {"saver": cascade.saver, "base": cascade.base}
    runs = {name: (lambda chunk, m=model: m.predict(chunk, ids[: len(chunk)])) for name, model in models.items()}
    for b in batches:  # warm-up at every batch size (model set-up, FLOPs counting, cuDNN autotuning)
        cascade.predict(images[:b], batch=b)
    times = {(name, b): [] for name in (*runs, "cascade") for b in batches}
    for _ in range(repeats):
        for b in batches:
            for name, run in runs.items():
                times[name, b].append(ms_per_image(run, images, b))
            times["cascade", b].append(ms_per_image(lambda chunk, b=b: cascade.predict(chunk, batch=b), images, b))
    exit_ratio = sum(r.exited for r in cascade.predict(images, batch=max(batches))) / len(images)
    return {"best": {key: min(values) for key, values in times.items()}, "exit_ratio": exit_ratio}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saver", default="demo:pico", help="saver weights or name (default demo:pico)")
    parser.add_argument("--base", default="demo:s", help="base weights or name (default demo:s)")
    parser.add_argument("--images", help="image folder (default: demo val images)")
    parser.add_argument("--limit", type=int, default=64, help="first N images (default 64)")
    parser.add_argument("--t", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=16, help="the larger batch size N (default 16)")
    parser.add_argument("--imgsz", type=int, help="inference size; default: each model's own")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--devices", nargs="+", help="default: cpu, and cuda:0 when there is one")
    parser.add_argument("--half", action="store_true", help="also time fp16 inference on each CUDA device")
    args = parser.parse_args(argv)

    import torch

    devices = args.devices or ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
    folder = Path(args.images) if args.images else assets.asset_path(assets.DEMO_IMAGES)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.limit]
    images = [cv2.imread(str(p)) for p in paths]
    batches = sorted({1, args.batch})
    print(f"{len(images)} images from {folder}, saver {args.saver} -> base {args.base}, t = {args.t}, "
          f"best of {args.repeats}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    runs = [(device, False) for device in devices]
    runs += [(device, True) for device in devices if args.half and device.startswith("cuda")]
    for device, half in runs:
        cascade = TinySaver(args.saver, args.base, args.t, device=device, half=half, imgsz=args.imgsz)
        result = measure(cascade, images, batches, args.repeats)
        best, r = result["best"], result["exit_ratio"]
        print(f"\n{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else "")
              + (", fp16" if half else "") + f": exit ratio r = {r:.3f}")
        print("| batch | T_S saver ms/img | T_B base ms/img | ideal T_S+(1-r)T_B | cascade ms/img | cascade / ideal |")
        print("|---|---|---|---|---|---|")
        for b in batches:
            ideal = best["saver", b] + (1 - r) * best["base", b]
            print(f"| {b} | {best['saver', b]:.2f} | {best['base', b]:.2f} | {ideal:.2f} | "
                  f"{best['cascade', b]:.2f} | {best['cascade', b] / ideal:.3f} |")


if __name__ == "__main__":
    main()
