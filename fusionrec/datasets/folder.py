"""Read a labelled photo collection laid out as one sub-folder per class."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

IMAGE_EXTENSIONS = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pgm",
    ".png",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)


def load_image_folder(
    root: str | os.PathLike,
    *,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    return_X_y: bool = False,
) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load the paths and labels of photos sorted into one folder per class.

    The layout is torchvision's ``ImageFolder``: ``root/<class name>/<photo>``,
    where photos may also sit in nested folders below their class folder.
    Nothing is decoded: the paths go to any fusionrec estimator as ``X``.

    Parameters
    ----------
    root : str or os.PathLike
        The folder that holds one sub-folder per class. Hidden entries (names
        starting with ``.``) are ignored, as are files directly in ``root``.
    extensions : tuple of str
        File name endings (case-insensitive) that count as photos.
    return_X_y : bool
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    sklearn.utils.Bunch
        ``data``: 1-D object array of photo paths (str), sorted by class, then
        path; ``target``: int array of class indices; ``target_names``: list of
        class names (the folder names, sorted); ``root``: the folder, as str.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist, holds no class folders, or a class folder
        holds no photo.
    NotADirectoryError
        If ``root`` is a file.

    Examples
    --------
    >>> from fusionrec.datasets import load_demo_products
    >>> demo = load_image_folder(load_demo_products().root)
    >>> demo.target_names[:2]
    ['Arla-Ecological-Medium-Fat-Milk', 'Arla-Lactose-Medium-Fat-Milk']
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {str(root)!r}")
    if not root.is_dir():
        raise NotADirectoryError(f"expected a folder of class sub-folders; {str(root)!r} is a file")
    class_dirs = sorted(
        (entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=lambda entry: entry.name,
    )
    if not class_dirs:
        raise FileNotFoundError(
            f"{str(root)!r} holds no class sub-folders; expected root/<class name>/<photo>"
        )
    suffixes = tuple(extension.lower() for extension in extensions)
    paths: list[str] = []
    target: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        photos = photos_below(class_dir, suffixes)
        if not photos:
            raise FileNotFoundError(
                f"class folder {str(class_dir)!r} holds no photo ending in one of {suffixes}"
            )
        paths.extend(photos)
        target.extend([label] * len(photos))
    data = np.array(paths, dtype=object)
    labels = np.array(target, dtype=np.int64)
    if return_X_y:
        return data, labels
    return Bunch(
        data=data,
        target=labels,
        target_names=[class_dir.name for class_dir in class_dirs],
        root=str(root),
    )


def photos_below(
    folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_EXTENSIONS
) -> list[str]:
    """Paths of the photo files below ``folder``, in a stable order; hidden ones are skipped.

    Folders are followed (symbolic links too), each folder's files first, in name order.
    A file counts as a photo by its suffix (case-insensitive), one of ``suffixes``.
    """
    photos = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        photos.extend(
            os.path.join(directory, name)
            for name in sorted(files)
            if not name.startswith(".") and name.lower().endswith(suffixes)
        )
    return photos
