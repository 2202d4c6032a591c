"""Tables and figures rebuilt from the metrics files (no model is loaded, except for previews)."""
