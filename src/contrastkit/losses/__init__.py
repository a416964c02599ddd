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
from contrastkit.losses.coconut import CoconutLoss, SourceSupConLoss, coconut_loss, source_supcon
from contrastkit.losses.cwcl import CWCLLoss, cwcl
from contrastkit.losses.dcl import DCLLoss, DCLWLoss, dcl, dclw, von_mises_fisher_weights
from contrastkit.losses.gram import GRAMLoss, gram_loss, gram_volume
from contrastkit.losses.groco import GroCoLoss, groco_loss
from contrastkit.losses.info_nce import InfoNCELoss, info_nce
from contrastkit.losses.memory_queue import MemoryQueue
from contrastkit.losses.metrix import (
    MetrixContrastiveLoss,
    MetrixMultiSimilarityLoss,
    metrix_contrastive,
    metrix_mixes,
    metrix_multi_similarity,
)
from contrastkit.losses.mixco import MixCoLoss, SoftCLIPLoss, mixco_loss, mixco_mix, soft_clip_loss
from contrastkit.losses.mochi import MoCHiLoss, MoCoLoss, mochi_negatives, moco_loss
from contrastkit.losses.multi_similarity import (
    MultiSimilarityLoss,
    MultiSimilarityMiner,
    multi_similarity_loss,
    multi_similarity_mine,
)
from contrastkit.losses.mw import MWLoss, mw_loss
from contrastkit.losses.nt_xent import NTXentLoss, nt_xent
from contrastkit.losses.siglip import SigLIPLoss, siglip
from contrastkit.losses.sogclr import ISogCLRLoss, SogCLRLoss, isogclr_loss, sogclr_loss
from contrastkit.losses.supcon import SupConLoss, supcon, supcon_per_anchor
from contrastkit.losses.supremix import SupReMixLoss, supremix
from contrastkit.losses.swav import SwAVLoss, SwAVPrototypes, sinkhorn, swav_loss
from contrastkit.losses.symile import SymileLoss, symile_loss

__all__ = [
    "AMCLLoss",
    "AlignUniformLoss",
    "CACRLoss",
    "CLIPLoss",
    "CWCLLoss",
    "CoconutLoss",
    "DCLLoss",
    "DCLWLoss",
    "GRAMLoss",
    "GroCoLoss",
    "ISogCLRLoss",
    "InfoNCELoss",
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
    "PairTemperatureMLP",
    "SigLIPLoss",
    "SoftCLIPLoss",
    "SogCLRLoss",
    "SourceSupConLoss",
    "SupConLoss",
    "SupReMixLoss",
    "SwAVLoss",
    "SwAVPrototypes",
    "SymileLoss",
    "align_uniform_loss",
    "alignment_loss",
    "amcl_loss",
    "cacr_loss",
    "clip_loss",
    "coconut_loss",
    "cwcl",
    "dcl",
    "dclw",
    "gram_loss",
    "gram_volume",
    "groco_loss",
    "info_nce",
    "isogclr_loss",
    "metrix_contrastive",
    "metrix_mixes",
    "metrix_multi_similarity",
    "mixco_loss",
    "mixco_mix",
    "mochi_negatives",
    "moco_loss",
    "multi_similarity_loss",
    "multi_similarity_mine",
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
]
