"""``dp_gaussian_copula``: a Gaussian-copula synthesizer with a formal (ε, δ) example-level guarantee.

Construction (two releases, both Gaussian mechanisms; add/remove-one-row adjacency):

1. **Noisy marginals.** Every column's domain is public (declared bounds, or the built-in
   dataset's published ranges; declared categories). A numeric column is cut into ``bins``
   equal-width bins over its public ``[low, high]`` (values clipped into it); a categorical
   column has one bin per declared category. Adding or removing a row changes one count of
   each of the ``d`` histograms by 1, so each histogram has L2 sensitivity 1. Each gets
   Gaussian noise of std ``σ_m``; the release is ``d`` Gaussian mechanisms,
   ``SelfComposedDpEvent(GaussianDpEvent(σ_m), d)``. Negative counts are clipped to 0 and
   the histogram normalized (post-processing).
2. **Noisy correlation of normal scores** ("Analyze Gauss", Dwork, Talwar, Thakurta and
   Zhang, STOC 2014). Each real row is mapped to normal scores ``z = Φ⁻¹(F̃(x))`` through the
   *noisy* marginal CDFs ``F̃`` of step 1 (scores clipped to ±3.09, categories placed at a
   random point of their CDF interval), then scaled down to ``‖z‖₂ ≤ C``. The upper triangle
   of ``S = Σ zzᵀ`` has L2 sensitivity ``‖z‖₂² ≤ C²`` (the sum of its squared entries is at
   most ``(Σ z_j²)²``); each entry gets Gaussian noise of std ``σ_c C²``:
   ``GaussianDpEvent(σ_c)``. ``S`` is normalized to a correlation matrix and projected onto
   the positive-definite cone (post-processing). The row transform depends only on that row
   and on the already-released step 1, so the two steps compose adaptively.

The ``d + 1`` Gaussian mechanisms compose exactly into one Gaussian mechanism with
``1/σ² = d/σ_m² + 1/σ_c²``. ``σ`` is calibrated so that the dp-accounting PLD accountant
gives the target ε at δ; ``marginal_share`` of ``1/σ²`` goes to the marginals, the rest to
the correlation. The ledger stores exactly these events and composes them with the same
accountant, so the ε this module reports is the ε the ledger charges.

Sampling draws ``z ~ N(0, R)`` and maps each coordinate back through ``F̃⁻¹`` (uniform within
a bin). Sampling, the number of rows and everything computed from the synthetic rows are
post-processing: free. The number of real rows is treated as public (as in DP-SGD).

Sources: the DP copula construction follows Li, Xiong and Jiang, "DPCopula: Differentially
private data synthesization by semiparametric Gaussian copula" (EDBT 2014), with Gaussian
noise instead of Laplace and Kendall's τ replaced by Analyze Gauss on normal scores, as in
the Gaussian-copula synthesizers benchmarked by Tao et al., "Benchmarking Differentially
Private Synthetic Data Generation Algorithms" (2021); the Gaussian mechanism's composition
and accounting follow Balle and Wang (ICML 2018) and dp-accounting's PLD accountant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from privtrain.data.schema import Column
from privtrain.errors import UserError
from privtrain.privacy import events as ev
from privtrain.privacy.dp_sgd import MAX_TARGET_EPSILON

_U_CLIP = 1e-3  # normal scores stay within ±Φ⁻¹(1 - 1e-3) ≈ ±3.09


@dataclass(frozen=True)
class DpCopulaPlan:
    """The DP synthesizer as planned from public facts, before any row is read."""

    epsilon: float  # PLD ε of ``events`` at ``delta``: what the ledger charges
    delta: float
    n_columns: int
    bins: int
    marginal_noise: float  # σ_m: std of the noise on each histogram count (sensitivity 1)
    correlation_noise: float  # σ_c: noise std / C² on each entry of the upper triangle of Σ zzᵀ
    row_clip: float  # C: bound on a row's L2 norm of normal scores

    @property
    def events(self) -> tuple:
        import dp_accounting

        return (
            dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(self.marginal_noise), self.n_columns),
            dp_accounting.GaussianDpEvent(self.correlation_noise),
        )


def _events(sigma: float, d: int, share: float) -> tuple:
    import dp_accounting

    sigma_m, sigma_c = sigma * math.sqrt(d / share), sigma / math.sqrt(1.0 - share)
    return (
        dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma_m), d),
        dp_accounting.GaussianDpEvent(sigma_c),
    )


def plan(
    *, epsilon: float, delta: float, n_columns: int, bins: int = 16, marginal_share: float = 0.5, row_clip: float = 1.0
) -> DpCopulaPlan:
    """Calibrate the noise for a target (ε, δ).

    Args:
        epsilon: target ε (> 0).
        delta: δ in (0, 1).
        n_columns: ``d``, the number of columns synthesized (target included).
        bins: histogram bins per numeric column.
        marginal_share: the share of the privacy (1/σ²) spent on the marginals, in (0, 1).
        row_clip: ``C`` in units of ``sqrt(d)`` (the expected norm of ``d`` standard normal scores).

    Raises:
        UserError: a value out of range (the message names the ``synth.*`` key).
    """
    key = "synth"
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise UserError(f"{key}.epsilon={epsilon} must be > 0 and finite.")
    if epsilon > MAX_TARGET_EPSILON:  # as for DP-SGD: the calibration would overflow, and the guarantee say nothing
        raise UserError(
            f"{key}.epsilon={epsilon:g} is above {MAX_TARGET_EPSILON:g}, where a DP guarantee no longer says "
            "anything useful; use synth=gaussian_copula for a non-private synthesizer."
        )
    if not 0 < delta < 1:
        raise UserError(f"{key}.delta={delta} must lie in (0, 1).")
    if int(bins) < 2:
        raise UserError(f"{key}.bins={bins} must be at least 2.")
    if not 0 < marginal_share < 1:
        raise UserError(f"{key}.marginal_share={marginal_share} must lie in (0, 1).")
    if not row_clip > 0:
        raise UserError(f"{key}.row_clip={row_clip} must be > 0.")
    if n_columns < 1:
        raise UserError("the DP synthesizer needs at least one column in its declared domain.")

    # The composition is exactly one Gaussian mechanism; dp-accounting's PLD (what the ledger uses)
    # agrees with the closed form to ~1e-8, and σ is raised slightly if it ever comes out above the target.
    sigma = gaussian_sigma(float(epsilon), float(delta)) * (1.0 + 1e-6)
    events = _events(sigma, n_columns, marginal_share)
    reported = ev.epsilon_pld(events, delta)
    while reported > epsilon:
        sigma *= 1.0005
        events = _events(sigma, n_columns, marginal_share)
        reported = ev.epsilon_pld(events, delta)
    return DpCopulaPlan(
        epsilon=reported,
        delta=float(delta),
        n_columns=n_columns,
        bins=int(bins),
        marginal_noise=events[0].event.noise_multiplier,
        correlation_noise=events[1].noise_multiplier,
        row_clip=float(row_clip) * math.sqrt(n_columns),
    )


def gaussian_sigma(epsilon: float, delta: float) -> float:
    """Smallest noise multiplier of one Gaussian mechanism that is exactly (ε, δ)-DP (Balle and Wang, 2018)."""
    from scipy.stats import norm

    def delta_of(sigma: float) -> float:
        a, b = 1.0 / (2.0 * sigma), epsilon * sigma
        return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))

    lo, hi = 1e-3, 1e4
    for _ in range(200):  # δ(σ) decreases in σ: bisect on a log scale
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


@dataclass
class _Marginal:
    column: Column
    probs: np.ndarray  # noisy, post-processed bin or category probabilities
    edges: np.ndarray | None  # numeric: bin edges over the public [low, high]

    @property
    def cum(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.probs)])

    def _codes(self, values: pd.Series) -> np.ndarray:
        """Category indices (-1: missing or undeclared), matched as training matches them (YAML booleans, text)."""
        from privtrain.data.encode import category_codes

        return category_codes(values, self.column.levels, f"dataset.schema.{self.column.name}")

    def counts(self, values: pd.Series) -> np.ndarray:
        if self.edges is None:
            codes = self._codes(values)
            return np.bincount(codes[codes >= 0], minlength=len(self.column.levels)).astype(float)
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        x = np.clip(x[~np.isnan(x)], *self.column.bounds)
        return np.histogram(x, bins=self.edges)[0].astype(float)

    def cdf(self, values: pd.Series, rng: np.random.Generator) -> np.ndarray:
        """Each value's position in [0, 1] under the noisy marginal (missing/unknown: 0.5)."""
        cum, probs = self.cum, self.probs
        if self.edges is None:
            codes = self._codes(values)
            known, k = codes >= 0, np.maximum(codes, 0)
            u = cum[k] + rng.uniform(size=len(k)) * probs[k]
            return np.where(known, u, 0.5)
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        missing = np.isnan(x)
        low, high = self.column.bounds
        x = np.clip(np.nan_to_num(x, nan=low), low, high)
        k = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(probs) - 1)
        width = self.edges[k + 1] - self.edges[k]
        u = cum[k] + probs[k] * (x - self.edges[k]) / width
        return np.where(missing, 0.5, u)

    def inverse(self, u: np.ndarray):
        cum, probs = self.cum, self.probs
        k = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(probs) - 1)
        if self.edges is None:
            return np.asarray(self.column.categories, dtype=object)[k]
        within = np.where(probs[k] > 0, (u - cum[k]) / np.where(probs[k] > 0, probs[k], 1.0), 0.5)
        return self.edges[k] + np.clip(within, 0.0, 1.0) * (self.edges[k + 1] - self.edges[k])


@dataclass
class DpCopula:
    """A fitted DP Gaussian copula: noisy marginals and a noisy correlation matrix (both DP releases)."""

    marginals: list[_Marginal]
    correlation: np.ndarray

    @property
    def columns(self) -> list[str]:
        return [m.column.name for m in self.marginals]

    def sample(self, num_rows: int, *, seed: int) -> pd.DataFrame:
        """Post-processing of the DP releases: any number of rows, free."""
        from scipy.stats import norm

        rng = np.random.default_rng(seed)
        z = rng.multivariate_normal(np.zeros(len(self.marginals)), self.correlation, size=int(num_rows), method="eigh")
        u = norm.cdf(z)
        data = {}
        for j, m in enumerate(self.marginals):
            values = m.inverse(u[:, j])
            data[m.column.name] = values if m.edges is not None else _typed(values, m.column.levels)
        return pd.DataFrame(data)


def _typed(values: np.ndarray, categories: tuple) -> np.ndarray:
    kinds = {type(c) for c in categories}
    if kinds <= {int, np.int64} or kinds <= {bool}:
        return values.astype(np.int64) if kinds != {bool} else values.astype(bool)
    return values


def _nearest_correlation(matrix: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    sym = (matrix + matrix.T) / 2.0
    vals, vecs = np.linalg.eigh(sym)
    psd = (vecs * np.clip(vals, floor, None)) @ vecs.T
    scale = np.sqrt(np.diag(psd))
    corr = psd / np.outer(scale, scale)
    np.fill_diagonal(corr, 1.0)
    return corr


def fit(frame: pd.DataFrame, domain: list[Column], p: DpCopulaPlan, *, rng: np.random.Generator) -> DpCopula:
    """Fit on the real rows: the only function here that reads them. Each release adds its noise.

    Args:
        frame: the real training rows (columns beyond ``domain`` are ignored).
        domain: the public domain, one :class:`Column` per synthesized column.
        p: the plan whose events were reserved in the ledger.
        rng: the noise's generator. It must be secret (``privtrain.privacy.randomness.numpy_generator()``,
            seeded from the OS): noise derived from a public seed can be replayed, and the rows then tell
            whether a row was in the data.
    """
    from scipy.stats import norm

    if len(domain) != p.n_columns:
        raise RuntimeError(f"plan for {p.n_columns} columns, domain has {len(domain)}")
    marginals = []
    for col in domain:
        edges = None if col.categories is not None else np.linspace(*col.bounds, p.bins + 1)
        m = _Marginal(col, np.zeros(len(col.categories) if col.categories is not None else p.bins), edges)
        noisy = np.clip(m.counts(frame[col.name]) + rng.normal(0.0, p.marginal_noise, size=len(m.probs)), 0.0, None)
        m.probs = noisy / noisy.sum() if noisy.sum() > 0 else np.full(len(noisy), 1.0 / len(noisy))
        marginals.append(m)
    u = np.column_stack([m.cdf(frame[m.column.name], rng) for m in marginals])
    z = norm.ppf(np.clip(u, _U_CLIP, 1.0 - _U_CLIP))
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z = z * np.minimum(1.0, p.row_clip / np.maximum(norms, 1e-12))
    d = len(domain)
    s = z.T @ z
    upper = np.triu_indices(d)
    noise = np.zeros((d, d))
    noise[upper] = rng.normal(0.0, p.correlation_noise * p.row_clip**2, size=len(upper[0]))
    s = s + noise + np.triu(noise, 1).T
    diag = np.clip(np.diag(s), 1e-6 * max(1.0, float(np.abs(s).max())), None)
    corr = np.clip(s / np.sqrt(np.outer(diag, diag)), -1.0, 1.0)
    return DpCopula(marginals, _nearest_correlation(corr))
