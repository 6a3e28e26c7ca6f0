"""Bluesky plans of ratagent (``symmetry_scan``). They may import ratagent; ratagent never imports them."""
