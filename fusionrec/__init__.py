"""fusionrec: recognise products in photos by fusing keypoint and CNN features.

The package follows one flowchart::

    images -> traditional branch (keypoints -> visual words) --+
           \\-> deep branch (CNN embeddings) -------------------+-> fusion -> tasks

:mod:`fusionrec.images` reads photos in every form; :mod:`fusionrec.datasets`
loads labelled photo folders and the bundled demo products.
"""

__version__ = "0.1.0.dev0"
