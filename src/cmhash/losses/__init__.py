"""Loss functions, one per file, each citing the equation it implements."""
from .djsrh import djsrh_loss
from .dsah import dsah_loss
from .joint_semantics import dsah_similarity, feature_similarity, joint_semantics_matrix

__all__ = ["djsrh_loss", "dsah_loss", "dsah_similarity", "feature_similarity", "joint_semantics_matrix"]
