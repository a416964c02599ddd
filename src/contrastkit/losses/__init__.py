"""Contrastive objectives: one concept per file, a pure function plus a thin module each."""

from contrastkit.losses.align_uniform import (
    AlignUniformLoss,
    align_uniform_loss,
    alignment_loss,
    uniformity_loss,
)
from contrastkit.losses.amcl import AMCLLoss, PairTemperatureMLP, amcl_loss
from contrastkit.losses.cacr import CACRLoss, cacr_loss
from contrastkit.losses.clip import CLIPLoss, clip_loss
from contrastkit.losses.coconut import CoconutLoss, coconut_loss
from contrastkit.losses.contrastive_gap import (
    ContrastiveGapLoss,
    contrastive_gap_loss,
    cross_modal_uniformity_loss,
    cua_loss,
    cuaxu_loss,
)
from contrastkit.losses.cwcl import CWCLLoss, cwcl
from contrastkit.losses.dcl import DCLLoss, DCLWLoss, dcl, dclw, von_mises_fisher_weights
from contrastkit.losses.gram import GRAMLoss, gram_loss, gram_volume
from contrastkit.losses.groco import GroCoLoss, groco_loss
from contrastkit.losses.hard_contrastive import (
    HardContrastiveLoss,
    hard_contrastive_loss,
    hard_simple_loss,
)
from contrastkit.losses.info_nce import InfoNCELoss, info_nce
from contrastkit.losses.memory_queue import MemoryQueue
from contrastkit.losses.metrix import (
    MetrixContrastiveLoss,
    MetrixMultiSimilarityLoss,
    metrix_contrastive,
    metrix_mixes,
    metrix_multi_similarity,
)
from contrastkit.losses.mixco import MixCoLoss, mixco_loss, mixco_mix
from contrastkit.losses.mochi import MoCHiLoss, mochi_negatives
from contrastkit.losses.moco import MoCoLoss, moco_loss
from contrastkit.losses.multi_similarity import (
    MultiSimilarityLoss,
    MultiSimilarityMiner,
    multi_similarity_loss,
    multi_similarity_mine,
)
from contrastkit.losses.multi_view import MVDHELLoss, MVInfoNCELoss, mv_dhel, mv_info_nce
from contrastkit.losses.mw import MWLoss, mw_loss
from contrastkit.losses.nt_xent import NTXentLoss, nt_xent
from contrastkit.losses.siglip import SigLIPLoss, siglip
from contrastkit.losses.soft_clip import SoftCLIPLoss, soft_clip_loss
from contrastkit.losses.sogclr import ISogCLRLoss, SogCLRLoss, isogclr_loss, sogclr_loss
from contrastkit.losses.source_supcon import SourceSupConLoss, source_supcon
from contrastkit.losses.supcon import SupConLoss, supcon, supcon_per_anchor
from contrastkit.losses.supremix import SupReMixLoss, supremix
from contrastkit.losses.swav import SwAVLoss, SwAVPrototypes, sinkhorn, swav_loss
from contrastkit.losses.symile import SymileLoss, symile_loss
from contrastkit.losses.weighted_negatives import (
    ClusterNegativeWeights,
    PairMLPWeights,
    WeightedInfoNCELoss,
    meow_loss,
    weighted_info_nce,
)
from contrastkit.losses.whitened_cse import (
    ShuffledGroupWhitening,
    WhitenedCSELoss,
    group_whiten,
    whitened_cse_loss,
)

__all__ = [
    "AMCLLoss",
    "AlignUniformLoss",
    "CACRLoss",
    "CLIPLoss",
    "CWCLLoss",
    "ClusterNegativeWeights",
    "CoconutLoss",
    "ContrastiveGapLoss",
    "DCLLoss",
    "DCLWLoss",
    "GRAMLoss",
    "GroCoLoss",
    "HardContrastiveLoss",
    "ISogCLRLoss",
    "InfoNCELoss",
    "MVDHELLoss",
    "MVInfoNCELoss",
    "MWLoss",
    "MemoryQueue",
    "MetrixContrastiveLoss",
    "MetrixMultiSimilarityLoss",
    "MixCoLoss",
    "MoCHiLoss",
    "MoCoLoss",
    "MultiSimilarityLoss",
    "MultiSimilarityMiner",
    "NTXentLoss",
    "PairMLPWeights",
    "PairTemperatureMLP",
    "ShuffledGroupWhitening",
    "SigLIPLoss",
    "SoftCLIPLoss",
    "SogCLRLoss",
    "SourceSupConLoss",
    "SupConLoss",
    "SupReMixLoss",
    "SwAVLoss",
    "SwAVPrototypes",
    "SymileLoss",
    "WeightedInfoNCELoss",
    "WhitenedCSELoss",
    "align_uniform_loss",
    "alignment_loss",
    "amcl_loss",
    "cacr_loss",
    "clip_loss",
    "coconut_loss",
    "contrastive_gap_loss",
    "cross_modal_uniformity_loss",
    "cua_loss",
    "cuaxu_loss",
    "cwcl",
    "dcl",
    "dclw",
    "gram_loss",
    "gram_volume",
    "groco_loss",
    "group_whiten",
    "hard_contrastive_loss",
    "hard_simple_loss",
    "info_nce",
    "isogclr_loss",
    "meow_loss",
    "metrix_contrastive",
    "metrix_mixes",
    "metrix_multi_similarity",
    "mixco_loss",
    "mixco_mix",
    "mochi_negatives",
    "moco_loss",
    "multi_similarity_loss",
    "multi_similarity_mine",
    "mv_dhel",
    "mv_info_nce",
    "mw_loss",
    "nt_xent",
    "siglip",
    "sinkhorn",
    "soft_clip_loss",
    "sogclr_loss",
    "source_supcon",
    "supcon",
    "supcon_per_anchor",
    "supremix",
    "swav_loss",
    "symile_loss",
    "uniformity_loss",
    "von_mises_fisher_weights",
    "weighted_info_nce",
    "whitened_cse_loss",
]
