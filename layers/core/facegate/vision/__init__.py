"""The vision core: safe decode → detect (YuNet) → align (5 points) → embed (SFace).

No AWS imports here: the vision path runs the same in a Lambda function, the Batch job and a laptop.
"""

from facegate.vision.decode import MAX_BYTES, MAX_PIXELS, ImageHeader, decode_image, read_header
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD, Detections, Face, YuNetDetector
from facegate.vision.embedder import EMBEDDING_DIM, Embedding, SFaceEmbedder
from facegate.vision.pipeline import FaceAnalysis, FacePipeline

__all__ = [
    "DEFAULT_SCORE_THRESHOLD",
    "EMBEDDING_DIM",
    "MAX_BYTES",
    "MAX_PIXELS",
    "Detections",
    "Embedding",
    "Face",
    "FaceAnalysis",
    "FacePipeline",
    "ImageHeader",
    "SFaceEmbedder",
    "YuNetDetector",
    "decode_image",
    "read_header",
]
