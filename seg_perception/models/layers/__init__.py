"""Layers shared by the networks, one concern a file."""
