"""Real faces into a blend: FFHQ-style alignment, latent projection into the base generator, stylised renders."""
from .align import align_face, alignment_quad, detect_faces
from .project import ProjectionResult, load_w, project, save_w
from .stylize import stylize_aligned, stylize_image

__all__ = ["align_face", "alignment_quad", "detect_faces", "ProjectionResult", "load_w", "project", "save_w",
           "stylize_aligned", "stylize_image"]
