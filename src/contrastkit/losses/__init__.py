"""Contrastive objectives: one concept per file, a pure function plus a thin module each."""

from contrastkit.losses.clip import CLIPLoss, clip_loss
from contrastkit.losses.cwcl import CWCLLoss, cwcl
from contrastkit.losses.dcl import DCLLoss, DCLWLoss, dcl, dclw, von_mises_fisher_weights
from contrastkit.losses.info_nce import InfoNCELoss, info_nce
from contrastkit.losses.nt_xent import NTXentLoss, nt_xent
from contrastkit.losses.siglip import SigLIPLoss, siglip
from contrastkit.losses.supcon import SupConLoss, supcon, supcon_per_anchor

__all__ = [
    "CLIPLoss",
    "CWCLLoss",
    "DCLLoss",
    "DCLWLoss",
    "InfoNCELoss",
    "NTXentLoss",
    "SigLIPLoss",
    "SupConLoss",
    "clip_loss",
    "cwcl",
    "dcl",
    "dclw",
    "info_nce",
    "nt_xent",
    "siglip",
    "supcon",
    "supcon_per_anchor",
    "von_mises_fisher_weights",
]
