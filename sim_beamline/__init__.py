"""The simulated beamline: ophyd devices driven by :mod:`ratagent.simulation`."""
