"""A backend whose import fails, as a plugin whose vendor driver is broken would: it must be set aside."""

raise RuntimeError("simulated driver crash")
