"""How good an explanation is: perturbation curves (pixel flipping, word deletion) and their AOPC
(:mod:`~lrpjax.evaluate.perturbation`), the batched faithfulness metrics of sequence models -- deletion
and insertion curves with zero, baseline, mask-token or ROAD removal, Delta A_F, ERASER
comprehensiveness and sufficiency, faithfulness correlation, sensitivity-n
(:mod:`~lrpjax.evaluate.metrics`) -- and the sanity checks, model-parameter randomisation and the random
logit (:mod:`~lrpjax.evaluate.sanity`)."""

from lrpjax.evaluate import metrics, sanity
from lrpjax.evaluate.perturbation import Score, aopc, perturbation_curve, perturbation_curves

__all__ = ["Score", "aopc", "metrics", "perturbation_curve", "perturbation_curves", "sanity"]
