"""Loss functions, one per file, each citing the equation it implements."""
from .adversarial import discriminator_loss, generator_loss
from .code_informativeness import informativeness_loss
from .cosine_triplet import bidirectional_cosine_triplet, cosine_triplet_loss, select_negatives
from .cross_modal_consistency import consistency_loss
from .dcmh import dcmh_loss
from .dgcpn import dgcpn_loss, dgcpn_similarity
from .decomposition import decomposition_loss
from .diagonal_ranking import diagonal_ranking_loss
from .distribution_consistency import distribution_consistency_loss, mmd2
from .djsrh import djsrh_loss
from .dsah import dsah_loss
from .dsprh_alignment import alignment_loss
from .jdsh import dsdw, dsdw_stats, jdsh_loss, jdsh_similarity
from .joint_semantics import dsah_similarity, feature_similarity, joint_semantics_matrix
from .multilevel_similarity import multilevel_similarity_loss
from .pairwise import label_similarity, pairwise_likelihood_loss, pairwise_targets
from .ssah import ssah_net_loss
from .ucch import contrastive_hashing_loss, cross_modal_ranking_loss
from .udsph_attention import attention_calibration_loss, attention_preservation_loss

__all__ = ["alignment_loss", "attention_calibration_loss", "attention_preservation_loss",
           "bidirectional_cosine_triplet", "consistency_loss", "contrastive_hashing_loss", "cross_modal_ranking_loss",
           "dgcpn_loss", "dgcpn_similarity", "dsdw", "dsdw_stats", "jdsh_loss", "jdsh_similarity", "cosine_triplet_loss", "dcmh_loss",
           "decomposition_loss", "diagonal_ranking_loss", "discriminator_loss", "distribution_consistency_loss", "djsrh_loss", "dsah_loss",
           "dsah_similarity", "feature_similarity", "generator_loss", "informativeness_loss",
           "joint_semantics_matrix", "label_similarity", "mmd2", "multilevel_similarity_loss",
           "pairwise_likelihood_loss", "pairwise_targets", "select_negatives", "ssah_net_loss"]
