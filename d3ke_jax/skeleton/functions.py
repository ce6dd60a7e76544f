"""Scalar functions of one coordinate as padded piecewise polynomials.

Every OpenSim function that drives a joint axis or couples two coordinates (Constant,
LinearFunction, PolynomialFunction, SimmSpline, NaturalCubicSpline, GCVSpline,
PiecewiseLinearFunction, MultiplierFunction of any of these, ...) is, between its knots and
beyond them, a polynomial. Each one is stored as ``n_segments`` polynomials of degree
``degree`` in the local variable ``t = (x - origin) * inv_width``; all functions of a model
share one padded table and are evaluated by one vectorized code path.
"""

import dataclasses

import flax.struct
import jax.numpy as jnp
import numpy as np

MAX_DEGREE = 5  # GCVSpline is at most quintic.


@flax.struct.dataclass
class PiecewisePolynomial:
  """``n`` padded piecewise polynomials.

  Attributes:
    breaks: (n, n_segments - 1) ascending knots between segments; padding is +inf.
    origin: (n, n_segments) where each segment's local variable is zero.
    inv_width: (n, n_segments) scale of each segment's local variable.
    coefs: (n, n_segments, degree + 1) coefficients, constant term first.
  """
  breaks: jnp.ndarray
  origin: jnp.ndarray
  inv_width: jnp.ndarray
  coefs: jnp.ndarray

  @property
  def num_segments(self):
    return self.coefs.shape[1]

  def __call__(self, x):
    """Evaluates function ``i`` at ``x[i]``; x is (n, *batch), batch dimensions last."""
    extra = (None,) * (x.ndim - 1)
    cast = lambda a: jnp.asarray(a, x.dtype)[(...,) + extra]
    coefs = cast(self.coefs)  # (n, K, D+1, *1)
    t = (x[:, None] - cast(self.origin)) * cast(self.inv_width)
    value = coefs[:, :, -1]
    for d in range(self.coefs.shape[2] - 2, -1, -1):
      value = value * t + coefs[:, :, d]
    if self.num_segments == 1:
      return value[:, 0]
    segment = jnp.sum(x[:, None] >= cast(self.breaks), axis=1)  # (n, *batch)
    onehot = segment[:, None] == jnp.arange(self.num_segments)[(slice(None),) + extra]
    return jnp.sum(jnp.where(onehot, value, 0.0), axis=1)


@dataclasses.dataclass(frozen=True)
class Polynomial:
  """One piecewise polynomial in host memory, before padding into a table."""
  breaks: np.ndarray  # (K - 1,)
  origin: np.ndarray  # (K,)
  inv_width: np.ndarray  # (K,)
  coefs: np.ndarray  # (K, D + 1)

  @classmethod
  def constant(cls, value):
    return cls(np.zeros(0), np.zeros(1), np.ones(1), np.array([[float(value)]]))

  @classmethod
  def linear(cls, slope, intercept):
    return cls(np.zeros(0), np.zeros(1), np.ones(1), np.array([[intercept, slope]], float))

  def scaled(self, factor):
    return dataclasses.replace(self, coefs=self.coefs * factor)

  @property
  def degree(self):
    nonzero = np.nonzero(np.any(np.abs(self.coefs) > 1e-14, axis=0))[0]
    return int(nonzero[-1]) if nonzero.size else 0

  def __call__(self, x):
    x = np.asarray(x, float)
    k = np.searchsorted(self.breaks, x, side="right")
    t = (x - self.origin[k]) * self.inv_width[k]
    return np.polynomial.polynomial.polyval(t, self.coefs[k].T, tensor=False)


def fit_piecewise(evaluate, knots, degree=MAX_DEGREE):
  """Fits the piecewise polynomial that ``evaluate`` computes, given its knots.

  Each segment (and the two unbounded ones outside the knots) is sampled at ``degree + 1``
  Chebyshev points in a normalised local variable and interpolated exactly; the caller
  checks the result against ``evaluate`` at other points.
  """
  knots = np.unique(np.asarray(knots, float))
  if knots.size == 0:
    lows, highs = [0.0], [1.0]  # one unbounded segment, sampled on [0, 1]
    origins, widths = [0.0], [1.0]
  else:
    edges = np.concatenate([[knots[0] - 1.0], knots, [knots[-1] + 1.0]])
    lows, highs = edges[:-1], edges[1:]
    origins = np.concatenate([[knots[0]], knots])
    widths = np.maximum(highs - lows, 1e-12)
    # The left segment's variable runs from its right end (the first knot) leftwards.
    widths[0] = -widths[0]
  nodes = 0.5 - 0.5 * np.cos(np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1))
  vander = np.vander(nodes, degree + 1, increasing=True)
  coefs = []
  for origin, width in zip(origins, widths):
    xs = origin + nodes * width
    coefs.append(np.linalg.solve(vander, np.array([evaluate(x) for x in xs])))
  return Polynomial(breaks=knots, origin=np.asarray(origins, float),
                    inv_width=1.0 / np.asarray(widths, float), coefs=np.array(coefs))


def pad_table(polys):
  """Stacks host polynomials into one padded ``PiecewisePolynomial`` table (NumPy leaves)."""
  if not polys:
    polys = [Polynomial.constant(0.0)]
  segments = max(p.coefs.shape[0] for p in polys)
  degree = max(p.degree for p in polys)
  n = len(polys)
  breaks = np.full((n, segments - 1), np.inf)
  origin = np.zeros((n, segments))
  inv_width = np.ones((n, segments))
  coefs = np.zeros((n, segments, degree + 1))
  for i, p in enumerate(polys):
    k = p.coefs.shape[0]
    breaks[i, :k - 1] = p.breaks
    origin[i, :k] = p.origin
    inv_width[i, :k] = p.inv_width
    coefs[i, :k, :p.coefs.shape[1]] = p.coefs[:, :degree + 1]
  return PiecewisePolynomial(breaks, origin, inv_width, coefs)
