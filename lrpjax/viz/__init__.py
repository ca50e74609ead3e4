"""Figures: relevance as colours (:mod:`~lrpjax.viz.render`: ANSI, HTML, LaTeX), text heatmaps and
deletion curves with matplotlib (:mod:`~lrpjax.viz.plot`), and self-contained HTML reports of many
sentences and methods (:mod:`~lrpjax.viz.report`). Imported on demand: ``import lrpjax`` does not load
matplotlib."""
