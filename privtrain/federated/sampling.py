"""Which clients take part in a round: Poisson sampling (rate q) or a fixed cohort (m without replacement).

Under central DP the draw is privacy-relevant (Poisson sampling earns amplification, and the fixed
cohort's accounting assumes nobody can predict it), so it comes from a secret generator
(:func:`privtrain.privacy.randomness.numpy_generator`, the OS's entropy) unless
``fl.reproducible_noise`` (debugging; the guarantee is then void). Without central DP no sampling
amplification is claimed at any unit, so the draw is public and reproducible from ``seed``.

Example:
    >>> import numpy as np
    >>> sampler = ClientSampler("fixed", rate=0.5, cohort=2, rng=np.random.default_rng(0))
    >>> len(sampler.sample([11, 12, 13, 14]))
    2
"""

from __future__ import annotations

import numpy as np


class ClientSampler:
    """Draws each round's participants from the connected nodes."""

    def __init__(self, sampling: str, *, rate: float, cohort: int, rng: np.random.Generator) -> None:
        """
        Args:
            sampling: ``poisson`` (each node independently with probability ``rate``) or ``fixed``
                (``cohort`` nodes uniformly without replacement).
            rate: q, for Poisson sampling.
            cohort: m, for the fixed cohort.
            rng: the generator every draw comes from.
        """
        self.sampling, self.rate, self.cohort, self.rng = sampling, float(rate), int(cohort), rng

    def sample(self, nodes) -> list[int]:
        """The nodes taking part in the next round (sorted); possibly none under Poisson sampling."""
        nodes = sorted(int(n) for n in nodes)  # a fixed order: the draw depends on the generator only
        if self.sampling == "poisson":
            keep = self.rng.random(len(nodes)) < self.rate
            return [n for n, k in zip(nodes, keep) if k]
        picked = self.rng.choice(len(nodes), size=min(self.cohort, len(nodes)), replace=False)
        return sorted(nodes[i] for i in picked)


def for_job(settings, num_clients: int) -> ClientSampler:
    """The sampler a run uses: secret under central DP (unless reproducible_noise), public otherwise."""
    from privtrain.privacy.randomness import numpy_generator

    if settings.central:
        rng = numpy_generator(settings.noise_seed, "client-sampling")
    else:
        rng = np.random.default_rng([int(settings.seed), 0x5A])
    return ClientSampler(
        settings.client_sampling,
        rate=settings.sample_rate(num_clients),
        cohort=settings.sample_size(num_clients) if settings.client_sampling == "fixed" else 0,
        rng=rng,
    )
