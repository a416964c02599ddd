"""Where a run's records go: ``metrics.jsonl`` always, CSV and TensorBoard on request.

Every record is a flat dict with ``kind`` (``"step"`` or ``"epoch"``) and ``step``. JSONL is the
source of truth: on resume it is cut back to the checkpoint's step and the CSV files are rebuilt
from it, so the logs of a resumed run equal those of an uninterrupted one.

* ``metrics.jsonl`` — every record;
* ``metrics.csv`` / ``epochs.csv`` — step and epoch records, one column per key
  (``train.csv = true``);
* ``tensorboard/`` — scalars for TensorBoard (``train.tensorboard = true``; needs the
  ``tensorboard`` package: ``pip install 'contrastkit[tensorboard]'``).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any


def read_records(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (a torn last line, from a killed run, is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunLog:
    """Appends records to the run's log files.

    Args:
        run_dir: the run directory.
        csv_files: also write ``metrics.csv`` and ``epochs.csv``.
        tensorboard: also write TensorBoard scalars under ``tensorboard/``.
    """

    def __init__(self, run_dir: Path, *, csv_files: bool = True, tensorboard: bool = False) -> None:
        self.run_dir = run_dir
        self.csv_files = csv_files
        self.writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ModuleNotFoundError(
                    "train.tensorboard = true needs the tensorboard package: "
                    "pip install 'contrastkit[tensorboard]'"
                ) from err
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def truncate(self, upto_step: int) -> None:
        """Keep the records up to ``upto_step`` (resume) and rebuild the CSV files from them."""
        keep = [r for r in read_records(self.run_dir) if r["step"] <= upto_step]
        path = self.run_dir / "metrics.jsonl"
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, path)
        for kind in ("step", "epoch"):
            self._csv_path(kind).unlink(missing_ok=True)
        if self.csv_files:
            for r in keep:
                self._append_csv(r)

    def reset(self) -> None:
        """Start empty logs (a new run)."""
        for name in ("metrics.jsonl", "metrics.csv", "epochs.csv"):
            (self.run_dir / name).unlink(missing_ok=True)

    def _csv_path(self, kind: str) -> Path:
        return self.run_dir / ("metrics.csv" if kind == "step" else "epochs.csv")

    def _append_csv(self, record: dict[str, Any]) -> None:
        path = self._csv_path(record["kind"])
        fields = [k for k in record if k != "kind"]
        if path.is_file():
            with path.open(newline="") as f:
                header = next(csv.reader(f), [])
            extra = [k for k in fields if k not in header]
            if extra:  # a new column: rewrite the file with the wider header
                with path.open(newline="") as f:
                    rows = list(csv.DictReader(f))
                header += extra
                with path.open("w", newline="") as f:
                    w = csv.DictWriter(f, header)
                    w.writeheader()
                    w.writerows(rows)
        else:
            header = fields
            with path.open("w", newline="") as f:
                csv.DictWriter(f, header).writeheader()
        with path.open("a", newline="") as f:
            csv.DictWriter(f, header, extrasaction="ignore").writerow(
                {k: v for k, v in record.items() if k != "kind"}
            )

    def write(self, record: dict[str, Any]) -> None:
        """Append one record everywhere."""
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.csv_files:
            self._append_csv(record)
        if self.writer is not None:
            prefix = "train" if record["kind"] == "step" else "epoch"
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self.writer.add_scalar(f"{prefix}/{k}", v, record["step"])
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
