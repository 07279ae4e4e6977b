"""Evaluation: Hamming distances, mAP / mAP@k / PR / precision@K, the protocol runner."""
from .hamming import binarize, hamming_packed, hamming_pm1, pack_codes, unpack_codes
from .metrics import (evaluate_retrieval, graded_relevance, map_at_k, mean_average_precision, ndcg_at_k, pr_curve,
                      precision_at_k, relevance)

__all__ = ["binarize", "hamming_packed", "hamming_pm1", "pack_codes", "unpack_codes", "evaluate_retrieval",
           "graded_relevance", "map_at_k", "ndcg_at_k", "mean_average_precision", "pr_curve", "precision_at_k",
           "relevance"]
