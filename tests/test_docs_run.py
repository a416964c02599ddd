"""The Python examples of the README and docs/scale.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_examples_run():
    blocks = _blocks(ROOT / "README.md")
    assert len(blocks) >= 2  # "use it as a library" and the quickstart
    for code in blocks:
        namespace: dict[str, object] = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
        assert torch.isfinite(namespace["loss"])  # type: ignore[arg-type]


def test_gradcache_example_trains_the_temperature():
    (code,) = [b for b in _blocks(ROOT / "docs" / "scale.md") if "grad_cache_step" in b]
    image_encoder, text_encoder = torch.nn.Linear(10, 8), torch.nn.Linear(6, 8)
    namespace: dict[str, object] = {
        "image_encoder": image_encoder,
        "text_encoder": text_encoder,
        "images": torch.randn(64, 10),
        "tokens": torch.randn(64, 6),
    }
    exec(compile(code.replace("chunk_size=256", "chunk_size=16"), "scale.md", "exec"), namespace)
    loss_fn = namespace["loss_fn"]
    start = torch.log(torch.tensor(1 / 0.07))
    assert float(loss_fn.temperature.log_inverse) != float(start)  # type: ignore[union-attr]
