"""Request generation: arrival processes and length distributions.

Every sampler takes a ``numpy.random.Generator``; nothing here touches global randomness.
"""

from chiron_gym.workload.arrivals import bulk_arrivals, poisson_arrivals
from chiron_gym.workload.lengths import LengthDist

__all__ = ["LengthDist", "bulk_arrivals", "poisson_arrivals"]
