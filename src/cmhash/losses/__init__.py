"""Loss functions, one per file, each citing the equation it implements."""
from .cosine_triplet import bidirectional_cosine_triplet, cosine_triplet_loss, select_negatives
from .djsrh import djsrh_loss
from .dsah import dsah_loss
from .dsprh_alignment import alignment_loss
from .joint_semantics import dsah_similarity, feature_similarity, joint_semantics_matrix
from .pairwise import pairwise_likelihood_loss, pairwise_targets

__all__ = ["alignment_loss", "bidirectional_cosine_triplet", "cosine_triplet_loss", "djsrh_loss", "dsah_loss",
           "dsah_similarity", "feature_similarity", "joint_semantics_matrix", "pairwise_likelihood_loss",
           "pairwise_targets", "select_negatives"]
