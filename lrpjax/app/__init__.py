"""The SST sentiment application: the shipped BiLSTM with its vocabulary and embeddings as one bundle
(:mod:`~lrpjax.app.model`) and the ``lrpjax`` command line (:mod:`~lrpjax.app.cli`). It is a client of the
library: nothing in the library imports it."""
