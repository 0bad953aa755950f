"""Layer-swap blending: hard or soft swap of synthesis blocks between two generators, mapping choice, direction."""
from .swap import DIRECTIONS, MAPPING_CHOICES, blend_generators, blend_state_dicts, direction_pair, swap_alpha

__all__ = ["DIRECTIONS", "MAPPING_CHOICES", "blend_generators", "blend_state_dicts", "direction_pair",
           "swap_alpha"]
