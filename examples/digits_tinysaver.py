"""TinySaver end to end on scikit-learn's bundled 8x8 digits: no download, seconds on one CPU core.

Trains a pool of three small classifiers of clearly different sizes (a linear model, a one-hidden-layer
MLP, a one-conv CNN) and a larger CNN as the base, writes each model's records for the train and
test splits in the authors' npz format, reads them back, chooses the saver with the lowest
``dC_tr`` on the training split (paper Table 2) and reports the Table 1 columns of every candidate
on the test split. Everything after training is a library call
(:func:`tinysaver_det.classification.study_savers`).

Costs are FLOPs per image counted by :func:`tinysaver_det.flops.count_flops` at batch size 1, the
counter the detection cascade uses: FLOPs = 2 * MACs for convolutions and matrix products only
(activations, pooling and the softmax are left out; they are tiny next to the matrix products here).

Usage (from the repository root)::

    python examples/digits_tinysaver.py --out runs/digits_tinysaver
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from tinysaver_det.classification import (
    ModelRecords,
    SaverStudy,
    load_record,
    save_authors_record,
    study_markdown,
    study_savers,
    write_study_csv,
)
from tinysaver_det.flops import FLOPS_CONVENTION, count_flops

BASE = "cnn_base"
COST_LABEL = "FLOPs"
COST_NOTE = f"Costs: FLOPs per 8x8 image; {FLOPS_CONVENTION}. C/C_B: cascade cost relative to the base alone."


class _Image(nn.Module):
    """Reshape the 64 flattened pixels back to a 1x8x8 image for the convolutions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, 1, 8, 8)


def build_models() -> dict[str, nn.Module]:
    """The saver pool (about 1.3k, 4.7k and 12k FLOPs) and the base (about 0.68M FLOPs), in that order."""
    return {
        "linear": nn.Linear(64, 10),
        "mlp32": nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
        "cnn8": nn.Sequential(
            _Image(), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)
        ),
        BASE: nn.Sequential(
            _Image(),
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(512, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        ),
    }


def load_splits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1], split in half at random (seeded): x_train, y_train, x_test, y_test."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    return x[train], y[train], x[test], y[test]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> nn.Module:
    """Adam, mini-batches of 64, seeded shuffling; returns the model in eval mode."""
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(targets), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), targets[batch]).backward()
            optimizer.step()
    return model.eval()


def probabilities(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax over the 10 classes, (N, 10)."""
    with torch.no_grad():
        return model(torch.from_numpy(x)).softmax(dim=1).numpy()


def main(argv=None) -> SaverStudy:
    """Train, record, select and report; returns the study so callers can check its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/digits_tinysaver"), help="records and CSV tables")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of every model")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the weights and the shuffling")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_splits(args.seed)
    torch.manual_seed(args.seed)
    records = {}
    for name, model in build_models().items():
        train(model, x_train, y_train, args.epochs, args.seed)
        paths = {
            split: save_authors_record(args.out / f"{name}_{split}.npz", probabilities(model, x), labels)
            for split, x, labels in (("train", x_train, y_train), ("test", x_test, y_test))
        }
        records[name] = ModelRecords(
            name,
            count_flops(lambda: model(torch.zeros(1, 64))).gflops * 1e9,
            load_record(paths["train"]),
            load_record(paths["test"]),
        )

    base = records.pop(BASE)
    study = study_savers(base, list(records.values()))
    print(
        f"Digits: {len(y_train)} train / {len(y_test)} test images; base {BASE}: "
        f"{base.cost:.0f} FLOPs, test top-1 {base.test.accuracy:.4f}\n"
    )
    print(study_markdown(study, COST_LABEL, COST_NOTE))
    for path in write_study_csv(study, args.out, COST_LABEL):
        print(f"wrote {path}")
    return study


if __name__ == "__main__":
    main()
