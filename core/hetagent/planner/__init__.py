"""Planning: which devices serve which work, at what TCO. `tco_study` runs the paper's fleet study."""
