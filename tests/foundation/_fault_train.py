"""A small training run for the fault-injection tests: ``python _fault_train.py OUT_DIR``.

Prints ``ready`` once imports are done (the parent times its signal from there) and writes
``OUT_DIR/final.pt`` with the final weights when training has finished.
"""

from __future__ import annotations

import sys

import torch

from pointsym.training import TrainConfig, Trainer


def main(out: str) -> None:
    print("ready", flush=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g))
    data = list(zip(x, y, strict=True))

    def loss_fn(model, batch):
        loss = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
        return loss, {"mse": float(loss.detach())}

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(64, 1))
    cfg = TrainConfig(epochs=12, batch_size=8, lr=3e-3, seed=5, out_dir=out, quiet=True)
    Trainer(model, loss_fn, cfg).fit(data[:448], data[448:])
    torch.save(model.state_dict(), f"{out}/final.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
