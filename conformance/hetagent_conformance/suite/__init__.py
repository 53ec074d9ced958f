"""The conformance tests, one module per tier: test_<tier>_<what>.py (`spec/conformance.md`, section 3)."""
