"""DeeperCut's image-conditioned pairwise model: one logistic regression per part pair.

Given two candidates ``d`` (part ``c``, at ``x_d``) and ``d'`` (part ``c'``), the model predicts
the probability that they belong to the same person from geometric features, DeeperCut-style:

- the displacement between them (distance and angle, ``Δf``/``θf``),
- how well each candidate's regressed offset to the other's part lands on the other (the
  residuals ``|x_d + o(d→c') − x_d'|`` and ``|x_d' + o(d'→c) − x_d|``, their ``exp(−·)``, and
  the cosine of the angle between the regressed and the actual vector, both directions),
- whether the two candidates agree on where *every* part of their person is (the mean over
  parts ``q`` of ``|x_d + o(d→q) − x_d' − o(d'→q)|``): same person ⇒ the same predicted skeleton.
  This is the feature that separates same-part pairs (duplicates of one joint vs. the same joint
  of two people), whose own-part offsets are zero,
- the size mismatch ``|log(σ_d / σ_d')|`` of the two predicted skeletons.

**Scale.** Pixel distances mean nothing across people 60–340 px tall, so every distance is
divided by a per-pair scale ``s = (σ_d + σ_d') / 2``, where ``σ_d`` is the spread (RMS distance
to their centroid) of the skeleton candidate ``d`` predicts, ``{x_d + o(d→q)}_q`` — its estimate
of its person's size from all ``P`` regressed offsets (≈ 0.32 × height for upright MPII-like
poses). This is more robust than the two regressed vectors of the pair alone, which are short
and noisy for adjacent parts and zero for same-part pairs. ``σ`` is floored at ``min_scale``
pixels so detectors without offset regression don't divide by zero.

Features of a pair are computed oriented from the candidate of the lower part index to the
higher; for same-label pairs, where no orientation exists, direction-dependent features are
symmetrised (``|cos θ|``, ``|sin θ|``, min/max of the two residuals, mean of the two cosines).

**Fit.** Plain maximum likelihood with an L2 prior (no class re-weighting, so probabilities stay
calibrated: the costs are log-odds and are added across pairs), all ``K = P(P+1)/2`` part-pair
models jointly by L-BFGS on standardised features. Training pairs are sampled per image among
the pairs :meth:`PairwiseModel.build_problem` would create an edge for; positives are pairs with
the same ``owner`` ≥ 0.

**Costs.** ``pair_cost = −logit(p)`` (negative = attractive) and ``unary = −logit(score)``,
both clipped to ``[−cmax, cmax]`` so one confident term can't overrule everything else.
"""

from deepercut.model.pairwise.features import (
    FEATURE_NAMES,
    NUM_FEATURES,
    candidate_scale,
    num_pair_classes,
    pair_class,
    pair_features,
)
from deepercut.model.pairwise.logistic import fit_logistic
from deepercut.model.pairwise.model import FORMAT, VERSION, PairwiseModel
from deepercut.model.pairwise.npz import LOGISTIC_ARRAYS, MAX_NPZ_BYTES, load_npz, save_npz

__all__ = [
    "FEATURE_NAMES",
    "FORMAT",
    "LOGISTIC_ARRAYS",
    "MAX_NPZ_BYTES",
    "NUM_FEATURES",
    "VERSION",
    "PairwiseModel",
    "candidate_scale",
    "fit_logistic",
    "load_npz",
    "num_pair_classes",
    "pair_class",
    "pair_features",
    "save_npz",
]
