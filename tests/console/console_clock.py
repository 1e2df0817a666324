"""A settable clock for the console's sans-I/O logic (a module, so tests import it by name)."""


class FakeClock:
    """A settable clock in ms for sans-I/O logic."""

    def __init__(self, now_ms: float = 1000.0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms

    def advance(self, ms: float) -> None:
        self.now_ms += ms
