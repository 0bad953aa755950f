"""FID/KID with clean-fid's Inception pipeline or an offline proxy extractor, cached reference features;
identity losses paired by seed against the base model."""
from .distances import feature_stats, frechet_distance, kernel_distance
from .extractors import (
                         EXTRACTORS,
                         INCEPTION_ENV,
                         INCEPTION_FILE,
                         FeatureExtractor,
                         InceptionExtractor,
                         RandCNNExtractor,
                         find_inception,
                         make_extractor,
)
from .identity import (
                         IDENTITY_EXTRACTORS,
                         IdentityExtractor,
                         auto_identity,
                         identity_baseline,
                         identity_scores,
                         make_identity,
                         retrieval_rate,
)
from .reference import CACHE_ENV, default_cache_dir, list_images, reference_features
from .scoring import evaluate_generator, generated_features, score

__all__ = ["CACHE_ENV", "EXTRACTORS", "IDENTITY_EXTRACTORS", "IdentityExtractor", "auto_identity", "identity_baseline", "identity_scores",
           "make_identity", "retrieval_rate", "INCEPTION_ENV", "INCEPTION_FILE", "FeatureExtractor",
           "InceptionExtractor", "RandCNNExtractor", "default_cache_dir", "evaluate_generator",
           "feature_stats", "find_inception", "frechet_distance", "generated_features", "kernel_distance",
           "list_images", "make_extractor", "reference_features", "score"]
