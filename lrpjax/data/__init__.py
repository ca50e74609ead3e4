"""Datasets (import the submodules): ``sst`` (Stanford Sentiment Treebank), ``toy`` (adding and
subtracting, Sec. 11.5.1), ``gridworld`` (Moneybag and Coins, Sec. 11.5.2), ``digits`` (8x8 handwritten
digits)."""
