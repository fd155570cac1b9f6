"""Networks and how they run, apart from any method: :mod:`.spec` (what a model and its weights file
are), :mod:`.networks` (the architectures, MONAI blocks) and :mod:`.inference` (tiles, memory,
devices). Importing this package imports neither torch nor MONAI; the submodules that need them do.
"""
