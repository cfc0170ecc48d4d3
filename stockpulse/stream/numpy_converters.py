"""Keep a job's start from importing pandas for a numpy test that cannot succeed.

pyspark registers two py4j input converters for numpy values, and py4j asks each of them about
every argument it sends to the JVM. Each asks ``pyspark.testing.utils`` whether numpy is
installed, and importing that module imports pandas and pyarrow: 1.4 s warm, 2.7 s cold on
this machine, spent on the job's first py4j call while the JVM waits for it. ``functions.lit``
runs the same import, so the job's own code builds its literals without it (the reasons as
``when``'s plain values, constants as SQL text).

A value can only be a numpy value once numpy has been imported. Until then, the wrapped
converters answer "not mine" without asking; afterwards they ask as before. The answers are the
same; only the import is saved.
"""

from __future__ import annotations

import sys


class WhenNumpyLoaded:
    """A py4j input converter that defers to ``inner`` only once numpy is imported."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def can_convert(self, value) -> bool:
        return "numpy" in sys.modules and self.inner.can_convert(value)

    def convert(self, value, gateway_client):
        return self.inner.convert(value, gateway_client)


def defer_numpy_converters() -> int:
    """Wrap pyspark's numpy converters in py4j's list (once; safe to call again); returns how
    many were wrapped by this call."""
    from py4j import protocol
    from pyspark.sql.types import NumpyArrayConverter, NumpyScalarConverter

    numpy_kinds = (NumpyArrayConverter, NumpyScalarConverter)
    converters = protocol.INPUT_CONVERTER
    wrapped = 0
    for position, converter in enumerate(converters):
        if isinstance(converter, numpy_kinds):
            converters[position] = WhenNumpyLoaded(converter)
            wrapped += 1
    return wrapped
