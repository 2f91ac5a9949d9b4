"""Probe sentences for the label-map check (affalign.scorers.label_check)."""
