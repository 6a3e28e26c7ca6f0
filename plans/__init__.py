"""Bluesky plans of ratagent (they may import ratagent; ratagent never imports them)."""

from plans.live import LiveAssessmentTable
from plans.symmetry import ASSESSMENT_FIELDS, symmetry_scan

__all__ = ["ASSESSMENT_FIELDS", "LiveAssessmentTable", "symmetry_scan"]
