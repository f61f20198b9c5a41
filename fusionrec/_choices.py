"""The names users choose from, in one light module.

The estimators validate against these and the command line offers them, so
``fusionrec --help`` can list them without importing PyTorch.
"""

BRANCHES = ("traditional", "deep", "fused")
"""Which features classify or search: keypoints, CNN embeddings, or both."""

FUSIONS = ("early", "late")
"""How both branches combine: one classifier on both blocks, or one per branch."""

SEARCHES = ("exact", "ivf")
"""How ProductIndex finds neighbours: every item compared, or faiss's inverted file."""

PRECISIONS = ("float32", "int8")
"""How CNNEmbedder runs its network: as trained, or quantised to int8 (faster on CPUs)."""
