"""Training logs: progress bar, metrics.jsonl, TensorBoard events and a loss-curve PNG.

All of it is written by the main process only (`enabled`), so multi-process runs log once. When
stderr is not a terminal (a log file, CI), the progress bar is one plain line per log interval
instead of carriage-return frames.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict

from .run import RunDir

PLOT_EVERY = 30.0  # seconds of wall time between redraws of loss.png while training; close() draws the last


class Monitor:
    def __init__(self, run: RunDir, enabled: bool = True, progress: bool = True):
        self.run, self.enabled, self.progress = run, enabled, progress
        self.bar = None
        self.lines = False  # progress as plain lines (stderr is not a terminal)
        self.step, self.total = 0, None
        self.tb = None
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._plotted, self._pending = time.perf_counter(), False  # last loss.png drawn; a redraw was skipped

    def start(self, total: int, initial: int = 0) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm
        from torch.utils.tensorboard import SummaryWriter
        self._keep_until(initial)
        # resumed: TensorBoard drops the events past the restored step (they are logged again)
        self.tb = SummaryWriter(str(self.run.file("tb")), purge_step=initial + 1 if initial else None)
        self.step, self.total = initial, total
        self.lines = self.progress and not _is_terminal(sys.stderr)
        if not self.lines:
            self.bar = tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True,
                            disable=not self.progress, unit="step")
        path = self.run.file("metrics.jsonl")
        if path.exists():  # resumed: keep the curve so far in the plot
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                for k, v in rec.items():
                    if k != "step" and isinstance(v, (int, float)):
                        self.history[k].append((rec["step"], v))

    def _keep_until(self, step: int) -> None:
        """Drop the metrics.jsonl rows past `step` (logged after the checkpoint a resumed run restarts from;
        it logs them again), rewriting the file atomically."""
        path = self.run.file("metrics.jsonl")
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(path)

    def advance(self) -> None:
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)

    def status(self, logs: dict[str, float], rate: float, unit: str) -> None:
        shown = {k: f"{v:.4f}" for k, v in logs.items() if "loss" in k}
        if self.bar is not None:
            self.bar.set_postfix(**shown, **{f"{unit}/s": f"{rate:,.0f}"})
        elif self.lines:
            of = f"/{self.total}" if self.total else ""
            parts = [f"train: step {self.step}{of}", *(f"{k} {v}" for k, v in shown.items()), f"{rate:,.0f} {unit}/s"]
            print(" | ".join(parts), file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        if not self.enabled:
            return
        rec = {"step": step}
        for k, v in values.items():
            name = f"{prefix}/{k}"
            rec[name] = v
            self.history[name].append((step, v))
            if self.tb is not None:
                self.tb.add_scalar(name, v, step)
        with open(self.run.file("metrics.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
        if prefix == "eval":
            self.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))

    def image(self, tag: str, array_hwc, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, array_hwc, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int) -> None:
        if self.tb is not None:
            self.tb.add_text(tag, text, step)

    def plot(self) -> None:
        """loss.png: every logged series whose name contains 'loss', against step. Redrawn at most every
        PLOT_EVERY seconds (a cross-validation of 10k short texts spent a quarter of its time drawing
        it at every evaluation); `close` draws a skipped one, so the final file has every point."""
        if not self.enabled:
            return
        self._pending = time.perf_counter() - self._plotted < PLOT_EVERY
        if self._pending:
            return
        self._plotted = time.perf_counter()
        # eval/train_loss (the mean over the interval) would repeat train/loss, lagging behind it
        series = {k: v for k, v in self.history.items() if "loss" in k and v and k != "eval/train_loss"}
        if not series:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        for name, pts in sorted(series.items()):
            xs, ys = zip(*[(s, v) for s, v in pts if math.isfinite(v)]) if pts else ((), ())
            ax.plot(xs, ys, label=name, marker="o" if name.startswith("eval") else None,
                    markersize=3, linewidth=1.2 if name.startswith("train") else 1.8)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.run.file("loss.png"))
        plt.close(fig)

    def close(self) -> None:
        if self._pending:
            self._plotted = -math.inf
            self.plot()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
