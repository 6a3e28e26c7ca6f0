"""Offline training of the ratagent model: structure bank, curriculum, calibration, evaluation.

Imports :mod:`ratagent`; ratagent never imports this package.
"""
