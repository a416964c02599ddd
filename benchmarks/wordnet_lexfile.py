"""WordNet noun glosses classified by lexicographer file, as embeddings for continual training.

Builds ``train.npz`` / ``test.npz`` (keys ``x``: frozen MiniLM embedding of the gloss, ``label``:
the lexicographer file, ``text``: MiniLM embedding of the synset's own words — a per-sample second
modality, as COCONUT pairs each utterance with its own transcription) from the system WordNet
(``/usr/share/wordnet/data.noun``)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/wordnet_lexfile.py --out runs/wordnet

Then ``benchmarks/continual_fmnist.py --data wordnet`` trains an MLP on them class-incrementally.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

# WordNet 3.0 lexicographer file numbers (lexnames(5WN)) of the noun files used: 10 classes.
LEXFILES = {
    4: "noun.act",
    5: "noun.animal",
    6: "noun.artifact",
    7: "noun.attribute",
    8: "noun.body",
    9: "noun.cognition",
    10: "noun.communication",
    13: "noun.food",
    18: "noun.person",
    20: "noun.plant",
}


def read_noun_synsets(path: Path) -> list[tuple[int, str, str]]:
    """``(lexfile, words, gloss)`` of every noun synset of ``data.noun``."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  ") or "|" not in line:
            continue  # the licence header
        head, gloss = line.split("|", 1)
        fields = head.split()
        lexfile, count = int(fields[1]), int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
        out.append((lexfile, ", ".join(words), gloss.strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wordnet", default="/usr/share/wordnet/data.noun")
    p.add_argument("--out", default="runs/wordnet")
    p.add_argument("--per-class", type=int, default=600, help="synsets per lexicographer file")
    p.add_argument("--test-per-class", type=int, default=150)
    args = p.parse_args(argv)
    from contrastkit.data.text import embed_texts

    synsets = read_noun_synsets(Path(args.wordnet))
    g = torch.Generator().manual_seed(0)
    rows: dict[str, list[tuple[int, str, str]]] = {"train": [], "test": []}
    for label, lexfile in enumerate(sorted(LEXFILES)):
        mine = [s for s in synsets if s[0] == lexfile]
        if len(mine) < args.per_class:
            raise SystemExit(f"{LEXFILES[lexfile]}: only {len(mine)} synsets")
        pick = torch.randperm(len(mine), generator=g)[: args.per_class].tolist()
        chosen = [(label, mine[i][1], mine[i][2]) for i in pick]
        rows["test"] += chosen[: args.test_per_class]
        rows["train"] += chosen[args.test_per_class :]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        x = embed_texts([gloss for _, _, gloss in items]).numpy()
        text = embed_texts([words for _, words, _ in items]).numpy()
        label = np.array([lab for lab, _, _ in items], dtype=np.int64)
        np.savez(out / f"{split}.npz", x=x, label=label, text=text)
        print(f"{split}: {len(items)} rows -> {out / f'{split}.npz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
