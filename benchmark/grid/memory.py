"""Peak memory of a stretch of work in this process, recorded in every row and read by `bench plan`:
the resident memory (sampled every 50 ms by a background thread from ``/proc/self/status``: the
whole, its anonymous part, which is what the process really costs, and its file-backed part, the
memory-mapped images and latents that every process of a machine shares) and, on a GPU, the
peak the CUDA allocator saw.

In a reused Ray worker the resident memory includes what earlier trials left loaded (a backbone
kept for the next trial), which is what the trial costs in that worker.
"""
from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import torch

STATUS = Path("/proc/self/status")
GIB = 2**30


def status_gib(*fields: str) -> dict[str, float]:
    """The named ``/proc/self/status`` fields (``VmRSS``, ``RssAnon``, ``RssFile``) in GiB; empty off Linux."""
    try:
        text = STATUS.read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            values[name] = int(rest.split()[0]) * 1024 / GIB
    return values


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.metrics("distill_")``."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.05):
        self.device = torch.device(device)
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self.cuda_gib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def _sample(self) -> None:
        for name, value in status_gib(*self.FIELDS).items():
            self.peaks[name] = max(self.peaks.get(name, 0.0), value)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        if self.device.type == "cuda":
            self.cuda_gib = torch.cuda.max_memory_allocated(self.device) / GIB

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}peak_rss_gib``, ``..._anon_gib``, ``..._file_gib`` and on a GPU ``{prefix}peak_cuda_gib``."""
        names = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
        out = {f"{prefix}peak_{names[k]}_gib": round(v, 3) for k, v in self.peaks.items()}
        if self.cuda_gib is not None:
            out[f"{prefix}peak_cuda_gib"] = round(self.cuda_gib, 3)
        return out


def peak_key(device: str) -> str:
    """The metric suffix that limits a trial on this kind of device: GPU memory, or resident memory."""
    return "peak_cuda_gib" if device == "cuda" else "peak_rss_gib"
