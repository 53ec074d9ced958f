"""Discrete-event simulation of a plan under a request trace (`hetagent simulate`), and the feedback loop that
re-plans with more headroom until the simulated percentile meets the SLA."""
