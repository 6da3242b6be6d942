"""Built-in trainers, registered through the same hook as everyone's.

``linear_probe``: a linear classifier over a feature column (pooled over its first axis
when a row is a matrix, e.g. vision-tower hiddens [tokens, hidden] -> [hidden]) and a
label column. Seconds on a CPU: it tells whether features carry a signal before a GPU
is paid for. Needs torch.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..plugins.hookspecs import hookimpl
from ..plugins.trainer import Trainer

PROBE_FILE = "probe.pt"


class LinearProbe(Trainer):
    """A linear classifier over a (pooled) feature column and a label column."""

    name = "linear_probe"
    version = "1"
    columns = {"features": "list", "label": "any"}
    eval_columns = {"features": "list", "label": "any"}

    class Params(Trainer.Params):
        steps: int = Field(200, gt=0, description="optimizer steps")
        batch_size: int = Field(64, gt=0)
        lr: float = Field(0.05, gt=0)
        weight_decay: float = Field(0.0, ge=0)
        pool: Literal["mean", "flatten"] = Field("mean", description="how a row's matrix becomes a vector")
        seed: int = 0

    def _vector(self, x):
        import torch
        x = x.float()
        if x.dim() > 2:
            x = x.mean(dim=1) if self.params.pool == "mean" else x.flatten(1)
        return torch.nan_to_num(x)

    def train(self, run) -> dict:
        import time

        import torch
        torch.manual_seed(self.params.seed)
        labels = run.distinct("label")
        index = {v: i for i, v in enumerate(labels)}
        shape = run.columns["features"].shape or (run.columns["features"].type.list_size,)
        dim = shape[-1] if self.params.pool == "mean" or len(shape) == 1 else int(torch.tensor(shape).prod())
        model = torch.nn.Linear(dim, len(labels))
        opt = torch.optim.AdamW(model.parameters(), lr=self.params.lr, weight_decay=self.params.weight_decay)
        steps = run.steps or self.params.steps  # seconds of work: --resume simply trains again
        run.set_total(steps)
        step, epoch, loss = 0, 0, float("nan")
        counts = torch.zeros(len(labels))
        while step < steps:
            loader = run.loader(batch_size=self.params.batch_size, epoch=epoch, drop_last=False)
            for batch in loader:
                started = time.perf_counter()
                x = self._vector(batch["features"])
                y = torch.tensor([index[v] for v in _labels(batch["label"])])
                if epoch == 0:
                    counts += torch.bincount(y, minlength=len(labels))
                loss_t = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss_t.backward()
                opt.step()
                step += 1
                loss = float(loss_t.detach())
                run.log(step, loss=loss, lr=self.params.lr, samples_per_s=len(y) / (time.perf_counter() - started))
                if step >= steps:
                    break
            epoch += 1
        torch.save({"state": model.state_dict(), "labels": labels, "majority": labels[int(counts.argmax())],
                    "pool": self.params.pool}, run.dir / PROBE_FILE)
        return {"loss": loss, "steps": step, "epochs": epoch, "classes": len(labels)}

    def evaluate(self, run) -> dict:
        import torch
        saved = torch.load(run.dir / PROBE_FILE) if run.dir is not None else None
        model = None
        if saved is not None:
            model = torch.nn.Linear(saved["state"]["weight"].shape[1], len(saved["labels"]))
            model.load_state_dict(saved["state"])
        predictions, right_base, right_tuned = [], 0, 0
        for batch in run.rows(batch_size=256):
            truth = _labels(batch["label"])
            base = [saved["majority"] if saved else None] * len(truth)
            tuned = [None] * len(truth)
            if model is not None:
                with torch.no_grad():
                    scores = model(self._vector(torch.tensor(batch["features"])))
                tuned = [saved["labels"][i] for i in scores.argmax(dim=1).tolist()]
            for key, t, b, p in zip(batch["key"], truth, base, tuned):
                right_base += b == t
                right_tuned += p == t
                predictions.append({"key": key, "label": t, "base": b, "tuned": p})
            run.progress(len(truth))
        n = len(predictions)
        metrics = {"base": {"accuracy": right_base / n if n else 0.0, "n": n}}
        if model is not None:
            metrics["tuned"] = {"accuracy": right_tuned / n if n else 0.0, "n": n}
        return {"metrics": metrics, "predictions": predictions, "base_is": "the training split's majority class"}


def _labels(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


@hookimpl
def featurekit_register_trainers():
    return [LinearProbe]
