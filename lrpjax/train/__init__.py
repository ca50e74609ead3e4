"""Training: one optax trainer for every model (:mod:`~lrpjax.train.trainer`: a compiled step, early
stopping, N models at once by ``vmap``, explanation penalties) and its up-front checks of data, labels
and optimizer (:mod:`~lrpjax.train.guards`)."""

from lrpjax.train.trainer import (NonFiniteLossError, PenaltyKeys, TrainConfig, TrainResult, explanation_penalty, fit,
                                  fit_many, make_loss, make_metric, make_optimizer, make_step, stack, unstack)

__all__ = ["NonFiniteLossError", "PenaltyKeys", "TrainConfig", "TrainResult", "explanation_penalty", "fit",
           "fit_many", "make_loss", "make_metric", "make_optimizer", "make_step", "stack", "unstack"]
