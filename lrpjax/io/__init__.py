"""Files and the terminal: ``.npz`` + JSON checkpoints (:mod:`~lrpjax.io.checkpoints`), atomic writes
(:mod:`~lrpjax.io.files`), record sinks of the command line (:mod:`~lrpjax.io.sinks`), the persistent
compilation cache (:mod:`~lrpjax.io.cache`) and a progress bar (:mod:`~lrpjax.io.progress`)."""
