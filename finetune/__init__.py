"""Adapting and training: image-folder data and splits, heads, freezing and cutting, the one training
loop (fine-tuning and from-scratch), recipes, evaluation and run directories.

May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""
