"""Bluesky plans of ratagent (they may import ratagent; ratagent never imports them)."""

from plans.detector import frame_source, wavelength_from_energy
from plans.integration import IntegratedPowder
from plans.live import LiveAssessmentFigure, LiveAssessmentTable
from plans.symmetry import ASSESSMENT_FIELDS, symmetry_scan

__all__ = ["ASSESSMENT_FIELDS", "IntegratedPowder", "LiveAssessmentFigure", "LiveAssessmentTable",
           "frame_source", "symmetry_scan", "wavelength_from_energy"]
