"""Labelled product photos: folders of the user's own, and the bundled demo set."""

from .demo import load_demo_products
from .folder import IMAGE_EXTENSIONS, load_image_folder, photos_below

__all__ = ["IMAGE_EXTENSIONS", "load_demo_products", "load_image_folder", "photos_below"]
