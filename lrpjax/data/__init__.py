"""Datasets: the Stanford Sentiment Treebank and synthetic tasks (import the submodules)."""
