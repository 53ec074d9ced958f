"""The python stage named by the dummy's lowering pipeline ("hetagent_dummy.lowering:pack")."""


def pack(artifact):
    """Takes and returns the artifact; the dummy has nothing to do."""
    return artifact
