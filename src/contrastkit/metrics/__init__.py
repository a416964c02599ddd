"""Diagnostics and evaluation metrics for embeddings (functional: tensors in, floats out).

Pairwise metrics share one pair layout:

* **paired** — ``f(queries, candidates)``: row ``i`` of each is the only positive pair;
* **labelled** — ``f(queries, candidates, query_labels=..., candidate_labels=...)``: positives
  share a label (integer ids or 0/1 multi-hot rows);
* **leave-one-out** — ``f(queries, query_labels=...)``: retrieval within one set, self excluded.

Everything pairwise is exact and computed in row blocks (``chunk_size``), so the ``n x m``
similarity matrix is never materialised. See ``docs/diagnostics.md``.
"""

from contrastkit.metrics.align_uniform import alignment, cross_uniformity, uniformity
from contrastkit.metrics.auc import AUCResult, auc
from contrastkit.metrics.hardness import (
    HardnessProfile,
    hardness_curve,
    hardness_profile,
    temperature_sweep,
)
from contrastkit.metrics.knn import knn_accuracy, knn_predict
from contrastkit.metrics.linear_probe import LinearProbeResult, linear_probe
from contrastkit.metrics.modality_gap import (
    ModalityGap,
    centroid_distance,
    linear_separability,
    modality_gap,
)
from contrastkit.metrics.rank import (
    CollapseWarning,
    SpectrumResult,
    effective_rank,
    singular_values,
    spectrum,
)
from contrastkit.metrics.retrieval import RetrievalResult, retrieval_metrics
from contrastkit.metrics.similarity_stats import SimilarityStats, similarity_stats, top1_accuracy
from contrastkit.metrics.splits import train_test_indices
from contrastkit.metrics.tolerance import tolerance

__all__ = [
    "AUCResult",
    "CollapseWarning",
    "HardnessProfile",
    "LinearProbeResult",
    "ModalityGap",
    "RetrievalResult",
    "SimilarityStats",
    "SpectrumResult",
    "alignment",
    "auc",
    "centroid_distance",
    "cross_uniformity",
    "effective_rank",
    "hardness_curve",
    "hardness_profile",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "linear_separability",
    "modality_gap",
    "retrieval_metrics",
    "similarity_stats",
    "singular_values",
    "spectrum",
    "temperature_sweep",
    "tolerance",
    "top1_accuracy",
    "train_test_indices",
    "uniformity",
]
