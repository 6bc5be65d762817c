"""The model card and the accountability report, generated from the catalog, the Cedar policies, the
model specs and the calibration (never written by hand), as JSON-ready data and as one HTML page.

Pure Python over the core layer: nothing here imports OpenCV or onnxruntime, so the API serves both.
"""

from facegate.accountability.html import render_html
from facegate.accountability.model_card import model_card
from facegate.accountability.report import accountability_report, tenant_report

__all__ = ["accountability_report", "model_card", "render_html", "tenant_report"]
