"""The executor class named by the dummy's ExecutorSpec; imported only when a worker starts."""


class DummyExecutor:
    def __init__(self, device=None, **options):
        self.device = device
        self.options = options
