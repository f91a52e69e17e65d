"""Cascade overhead: measured cascade seconds per image vs the ideal ``T_S + (1 - r) * T_B``.

One run on the demo val set (default: saver pico, base s, t = 0.25, batch 32). Images are decoded
once, up front, and excluded from every timing. After a warm-up batch, each measurement (saver
alone, base alone, cascade) is repeated ``--repeats`` times, interleaved, and the fastest is kept,
so that a busy machine disturbs all three alike. ``T_S`` and ``T_B`` are the standalone seconds per
image at the same batch size; ``r`` the cascade's exit ratio. The printed ratio is the cost of the
cascade's own bookkeeping (confidence, routing, a second batch for the base): goal <= 1.05.
"""

from __future__ import annotations

import argparse
import os
from time import perf_counter

os.environ.setdefault("YOLO_OFFLINE", "1")

from tinysaver_det import assets  # noqa: E402
from tinysaver_det.adapters.ultralytics import UltralyticsDetector  # noqa: E402
from tinysaver_det.detection.cascade import Cascade  # noqa: E402
from tinysaver_det.detection.dataset import CocoDataset  # noqa: E402
from tinysaver_det.detection.images import load_image  # noqa: E402


def seconds_per_image(run_batch, images, ids, batch_size) -> float:
    start = perf_counter()
    for i in range(0, len(images), batch_size):
        run_batch(images[i : i + batch_size], ids[i : i + batch_size])
    return (perf_counter() - start) / len(images)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--t", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    dataset = CocoDataset(assets.asset_path(assets.DEMO_ANNOTATIONS), assets.asset_path(assets.DEMO_IMAGES), args.limit)
    images = [load_image(dataset.path(info)) for info in dataset.images]
    ids = dataset.image_ids
    saver = UltralyticsDetector(assets.asset_path(assets.DEMO_SAVER), dataset.category_ids_by_name)
    base = UltralyticsDetector(assets.asset_path(assets.DEMO_BASE), dataset.category_ids_by_name)
    cascade = Cascade(saver, base, args.t)
    cascade(images[: args.batch], ids[: args.batch])  # warm-up: model set-up, FLOPs counting

    timings = {"saver": [], "base": [], "cascade": []}
    for _ in range(args.repeats):
        timings["saver"].append(seconds_per_image(saver.predict, images, ids, args.batch))
        timings["base"].append(seconds_per_image(base.predict, images, ids, args.batch))
        timings["cascade"].append(seconds_per_image(cascade, images, ids, args.batch))
    exit_ratio = sum(out.record.exited for i in range(0, len(images), args.batch)
                     for out in cascade(images[i : i + args.batch], ids[i : i + args.batch])) / len(images)
    t_saver, t_base, t_cascade = (min(timings[k]) for k in ("saver", "base", "cascade"))
    ideal = t_saver + (1 - exit_ratio) * t_base
    print(f"{len(images)} demo val images, batch {args.batch}, t = {args.t}, best of {args.repeats}")
    print(f"T_S (saver alone)   {t_saver * 1e3:8.2f} ms/img")
    print(f"T_B (base alone)    {t_base * 1e3:8.2f} ms/img")
    print(f"exit ratio r        {exit_ratio:8.3f}")
    print(f"ideal T_S+(1-r)T_B  {ideal * 1e3:8.2f} ms/img")
    print(f"cascade measured    {t_cascade * 1e3:8.2f} ms/img")
    print(f"cascade / ideal     {t_cascade / ideal:8.3f}   (goal <= 1.05)")


if __name__ == "__main__":
    main()
